"""Connecting to NATS with the runtime's reconnect policy."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client as NatsClient

log = logging.getLogger(__name__)

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

Callback = Callable[[], Awaitable[None]]


def nats_url_from_env(explicit: str | None = None) -> str:
    """``explicit``, else ``$NATS_SERVER``, else ``nats://127.0.0.1:4222``."""
    return explicit or os.environ.get("NATS_SERVER") or DEFAULT_NATS_URL


async def connect_nats(
    url: str,
    *,
    name: str,
    on_disconnected: Callback | None = None,
    on_reconnected: Callback | None = None,
    connect_timeout: float = 5.0,
    retry_for: float | None = 5.0,
) -> NatsClient:
    """Connect and keep reconnecting forever (short waits: a restarted server is back fast).

    The first connection is retried for ``retry_for`` seconds (None: forever), then
    :class:`ConnectionError`.
    """

    async def _error_cb(exc: Exception) -> None:
        log.debug("nats %s: %s", name, exc)

    async def _disconnected_cb() -> None:
        log.info("nats %s: disconnected from %s", name, url)
        if on_disconnected is not None:
            await on_disconnected()

    async def _reconnected_cb() -> None:
        log.info("nats %s: reconnected to %s", name, url)
        if on_reconnected is not None:
            await on_reconnected()

    # nats-py retries the first connection by itself (forever, with max_reconnect_attempts=-1);
    # bound it by cancelling, and close the half-made client so no task or socket leaks.
    nc = NatsClient()
    per_try = connect_timeout if retry_for is None else min(connect_timeout, max(retry_for, 1.0))
    attempt = nc.connect(
        url.split(","),
        name=name,
        connect_timeout=max(1, round(per_try)),
        reconnect_time_wait=0.25,  # type: ignore[arg-type]  # a float works; the stub says int
        max_reconnect_attempts=-1,
        ping_interval=5,
        max_outstanding_pings=2,
        allow_reconnect=True,
        error_cb=_error_cb,
        disconnected_cb=_disconnected_cb,
        reconnected_cb=_reconnected_cb,
        pending_size=8 * 1024 * 1024,
        flusher_queue_size=4096,
        # Our subjects are built from sanitized tokens (transport.subjects); skip re-validation.
        skip_subject_validation=True,
    )
    try:
        if retry_for is None:
            await attempt
        else:
            await asyncio.wait_for(attempt, retry_for)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        if isinstance(exc, TimeoutError | OSError | nats.errors.Error):
            raise ConnectionError(f"cannot connect to NATS at {url}: {exc!r}") from exc
        raise
    return nc
