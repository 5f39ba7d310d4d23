"""NATS request plane: discovery (heartbeat registration), request/stream transport."""
