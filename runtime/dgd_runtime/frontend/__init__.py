"""The OpenAI-compatible HTTP frontend: parse, preprocess, route, stream (``python -m dgd_runtime.frontend``)."""
