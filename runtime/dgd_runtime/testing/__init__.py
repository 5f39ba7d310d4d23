"""Helpers for tests and benchmarks: a real nats-server process, tiny offline model directories."""
