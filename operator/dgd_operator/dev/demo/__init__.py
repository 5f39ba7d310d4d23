"""`make demo` / `dgd demo`: run one DynamoGraphDeployment end to end on this machine, then clean up.

What it does, in order:

1. reads and validates the graph (default: ``recipes/vllm-disagg.yaml``);
2. uses the running ``dgd dev`` cluster if there is one, else starts its own local control plane
   (etcd, kube-apiserver, controller-manager, scheduler and simulated GPU nodes) in its own
   state directory (default ``~/.local/state/dgd/demo``);
3. runs the operator as a child process (``dgd operator``, log in the state directory);
4. applies the DGD and prints a line each time its readiness changes, until it is Ready;
5. shows the DGD status, the objects the operator created (pods with node and GPUs), and that
   they are the same set ``dgd render`` prints;
6. stops the operator and the control plane it started (a reused ``dgd dev`` cluster keeps
   running; only the demo namespace is deleted), unless ``--keep``.

    python -m dgd_operator.dev.demo [--dgd FILE] [--keep] [--timeout SECONDS]
    python -m dgd_operator.dev.demo --down      # stop what `--keep` left running

Modules: `options` (the command line, standard library only, shared with `dgd demo`), `graph`
(read and render the DGD), `cluster` (the control plane and namespace), `watch` (apply and wait
until Ready), `report` (what is shown once it is), `run` (the sequence and the cleanup). The
operator runs through `dgd_operator.dev.operator_process`, shared with the benchmarks.
"""
