"""Routing of requests to worker instances: round-robin, random, KV-cache aware."""
