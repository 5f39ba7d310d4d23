"""Engine-agnostic worker: serves an :class:`~dgd_runtime.workers.engine.Engine` over NATS."""
