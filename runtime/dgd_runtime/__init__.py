"""dgd serving runtime: OpenAI frontend, router, NATS request plane, engine workers."""

__version__ = "0.1.0"
