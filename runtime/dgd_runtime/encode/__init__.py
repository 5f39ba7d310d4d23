"""The encode component: turns media into embeddings for prefill/aggregated workers.

``python -m dgd_runtime.encode`` serves the ``encode`` component (Dynamo's encode worker of
the E+PD and E/P/D multimodal graphs). Media arrive as media-store references, embeddings
leave the same way (:mod:`dgd_runtime.transport.media_store`).
"""
