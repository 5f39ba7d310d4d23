"""NATS subject names used by the runtime (one place, so both sides agree)."""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


def token(value: str) -> str:
    """Make ``value`` usable as one NATS subject token (no dots, spaces or wildcards)."""
    return _UNSAFE.sub("_", value) or "_"


def endpoint_key(namespace: str, component: str, endpoint: str) -> str:
    """``ns.component.endpoint`` with every part made subject-safe."""
    return f"{token(namespace)}.{token(component)}.{token(endpoint)}"


def request_subject(namespace: str, component: str, endpoint: str, instance_id: str) -> str:
    """Subject a worker instance serves requests on."""
    return f"dgd.rq.{endpoint_key(namespace, component, endpoint)}.{token(instance_id)}"


def control_subject(request_subject: str) -> str:
    """Subject of a worker's stream control messages (credits, cancel, ping)."""
    return f"{request_subject}.ctl"


def kv_dump_subject(request_subject: str) -> str:
    """Request/reply subject returning a worker's whole prefix cache (router resync)."""
    return f"{request_subject}.kvdump"


def discovery_subject(namespace: str, component: str, endpoint: str) -> str:
    """Workers announce (heartbeat) and deregister here; ``namespace="*"`` for a wildcard."""
    ns = "*" if namespace == "*" else token(namespace)
    return f"dgd.disc.{ns}.{token(component)}.{token(endpoint)}"


def discovery_query_subject(component: str, endpoint: str) -> str:
    """Clients ask workers to announce themselves at once here (namespace filter in the body)."""
    return f"dgd.discq.{token(component)}.{token(endpoint)}"


def kv_events_subject(namespace: str, component: str, endpoint: str) -> str:
    """Workers publish KV cache events here; ``namespace="*"`` for a wildcard."""
    ns = "*" if namespace == "*" else token(namespace)
    return f"dgd.kv.{ns}.{token(component)}.{token(endpoint)}"


def namespace_matches(namespace: str, wanted: str, prefix: bool) -> bool:
    """Whether a worker's ``namespace`` is ``wanted`` (or, with ``prefix``, ``wanted-...``)."""
    if namespace == wanted:
        return True
    return prefix and namespace.startswith(wanted + "-")


def transfer_release_subject(request_subject: str) -> str:
    """A prefill worker frees the KV blocks it holds for a decode worker on messages here."""
    return f"{request_subject}.release"
