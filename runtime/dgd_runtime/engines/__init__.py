"""Inference engines behind the worker's :class:`~dgd_runtime.workers.engine.Engine` protocol.

Only the mock engine (:mod:`.mock`, with :mod:`.kv_cache`) exists today. Adapters for vLLM,
SGLang and TensorRT-LLM are deliberately absent (not stubbed): each will be a module here that
wraps the engine's async API into ``generate``/``abort``, converts its KV cache events into
:class:`~dgd_runtime.protocol.KvEvent` (chained hashes from :mod:`dgd_runtime.router.hashing`),
and is selected by ``--engine`` in :mod:`dgd_runtime.worker`.
"""
