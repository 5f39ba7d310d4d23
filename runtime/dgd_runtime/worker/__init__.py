"""The worker: one engine (chosen through :mod:`dgd_runtime.engines.registry`) served over NATS.

:mod:`.cli` is ``python -m dgd_runtime.worker``; :mod:`.service` registers the engine in
discovery, serves its streams and publishes its KV events; :mod:`.system_server` answers the
kubelet's probes and Prometheus; :mod:`.model_dir` reads the local model directory.
"""
