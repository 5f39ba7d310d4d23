"""Wait until TCP endpoints accept connections, with a deadline and a clear failure message.

Usage (as a script, the way pods run it from the launch-scripts ConfigMap)::

    wait_tcp.py [--timeout SECONDS] [--what TEXT] HOST:PORT [HOST:PORT ...]

Without targets it reads Dynamo's interface: `LEADER_HOST`, `LEADER_PORT`, plus ours
`DGD_WAIT_TIMEOUT` (seconds, 0 = wait forever) and `DGD_WAIT_WHAT` (what is awaited, for
messages). Exit status 0 when every target answered, 1 on timeout, 2 on bad usage.

Standalone on purpose: stdlib only, no imports from this project.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence

Target = tuple[str, int]


class WaitTimeoutError(TimeoutError):
    """Some targets did not accept a TCP connection before the deadline."""


def parse_target(text: str) -> Target:
    """Parse `host:port` (the last colon splits, so bracket-less IPv6 is not supported)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def probe(target: Target, connect_timeout: float = 3.0) -> str | None:
    """Try one TCP connection; None on success, else a short reason (DNS or connect error)."""
    host, port = target
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"DNS lookup of {host} failed ({exc.strerror or exc})"
    last = "no address"
    for family, kind, proto, _, address in infos:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(connect_timeout)
                sock.connect(address)
            return None
        except OSError as exc:
            last = f"connect to {address[0]}:{port} failed ({exc.strerror or exc})"
    return last


def wait_for_targets(
    targets: Sequence[Target],
    *,
    timeout: float,
    what: str = "the leader",
    interval: float = 2.0,
    log: Callable[[str], None] = lambda line: print(line, flush=True),
) -> float:
    """Block until every target accepts TCP; return the seconds waited.

    `timeout <= 0` waits forever. Raises `WaitTimeoutError` naming the targets still missing and
    the last error seen for each.
    """
    start = time.monotonic()
    pending = {target: "not tried yet" for target in targets}
    last_report = start
    names = ", ".join(f"{h}:{p}" for h, p in targets)
    log(f"dgd: waiting for {what} at {names}" + (f" (timeout {timeout:g}s)" if timeout > 0 else ""))
    while True:
        for target in list(pending):
            reason = probe(target)
            if reason is None:
                del pending[target]
                log(f"dgd: {target[0]}:{target[1]} is accepting connections")
            else:
                pending[target] = reason
        elapsed = time.monotonic() - start
        if not pending:
            log(f"dgd: {what} ready after {elapsed:.1f}s")
            return elapsed
        if timeout > 0 and elapsed >= timeout:
            details = "; ".join(f"{h}:{p}: {why}" for (h, p), why in pending.items())
            raise WaitTimeoutError(
                f"dgd: timed out after {timeout:g}s waiting for {what}: "
                f"{len(pending)} of {len(targets)} endpoint(s) not reachable ({details})"
            )
        now = time.monotonic()
        if now - last_report >= 30:
            log(
                f"dgd: still waiting for {what} ({elapsed:.0f}s): "
                + ", ".join(f"{h}:{p}" for h, p in pending)
            )
            last_report = now
        time.sleep(interval)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description="Wait until HOST:PORT targets accept TCP.")
    parser.add_argument("targets", nargs="*", help="HOST:PORT (default: $LEADER_HOST:$LEADER_PORT)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds; 0 = forever")
    parser.add_argument("--what", default=None, help="what is awaited, for messages")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between attempts")
    args = parser.parse_args(argv)
    try:
        if args.targets:
            targets = [parse_target(t) for t in args.targets]
        else:
            targets = [(os.environ["LEADER_HOST"], int(os.environ["LEADER_PORT"]))]
    except (KeyError, ValueError) as exc:
        print(
            f"dgd: wait_tcp: bad target ({exc}); pass HOST:PORT or set LEADER_HOST/LEADER_PORT",
            file=sys.stderr,
        )
        return 2
    timeout = (
        args.timeout
        if args.timeout is not None
        else float(os.environ.get("DGD_WAIT_TIMEOUT", "0") or 0)
    )
    what = args.what or os.environ.get("DGD_WAIT_WHAT") or "the leader"
    try:
        wait_for_targets(targets, timeout=timeout, what=what, interval=args.interval)
    except WaitTimeoutError as exc:
        print(str(exc), file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
