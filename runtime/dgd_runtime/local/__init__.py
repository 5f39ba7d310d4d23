"""Run a graph on this machine: the process supervisor behind ``dgd serve``.

:mod:`.plan` is what to run (plain data from the operator's command), :mod:`.graph` starts and
stops the processes (nats-server, workers, frontend; all on 127.0.0.1, stopped by PID),
:mod:`.nats_server` runs nats-server and :mod:`.model_dir` builds the tiny offline model used
when no model directory is given.
"""
