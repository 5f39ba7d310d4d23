"""`dgd operator`: run the DGD operator in the foreground.

Uses the in-cluster service account when present, else the current kubeconfig. Configuration
comes from `DGD_*` environment variables (see `dgd_operator.settings`); `--namespace` and
`--verbose` override the matching ones. Only the standard library is imported at module level.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

HELP = "run the DGD operator in the foreground (kubeconfig or in-cluster)"
EPILOG = """\
environment:
  DGD_WATCH_NAMESPACES  comma list of namespaces (empty: all)
  DGD_NATS_ADDRESS, DGD_ETCD_ADDRESS, DGD_DISCOVERY_BACKEND (kubernetes|etcd)
  DGD_IMAGE_PULL_SECRET_DISCOVERY (true), DGD_MPI_SSH_SECRET_NAME (mpi-run-ssh-secret)
  DGD_METRICS_PORT (8080), DGD_HEALTH_PORT (8081), DGD_BIND_ADDRESS (0.0.0.0)
  DGD_LOG_LEVEL (INFO), DGD_LOG_FORMAT (text|json), DGD_WORKERS (8)
  DGD_PLANNER_CLUSTER_ROLE_NAME, DGD_EPP_CLUSTER_ROLE_NAME (unset: no binding)
  DGD_MODEL_EXPRESS_URL, DGD_PROMETHEUS_ENDPOINT (unset: not injected)
  DGD_INGRESS_ENABLED (false), DGD_INGRESS_CLASS_NAME, DGD_INGRESS_TLS_SECRET_NAME,
  DGD_INGRESS_HOST_SUFFIX (local), DGD_ISTIO_GATEWAY (unset: no VirtualService)
  DGD_ISTIO_ENABLED (false), DGD_ISTIO_TLS_MODE (SIMPLE), DGD_ISTIO_INSECURE_SKIP_VERIFY (true),
  DGD_ISTIO_CLIENT_CERTIFICATE, DGD_ISTIO_PRIVATE_KEY, DGD_ISTIO_CA_CERTIFICATES
  DGD_GROUP_RESTART_BUDGET (5), DGD_GROUP_RESTART_WINDOW (1800),
  DGD_GROUP_RESTART_BACKOFF (10), DGD_GROUP_RESTART_BACKOFF_CAP (300)
  DGD_WEBHOOK_ENABLED (false), DGD_WEBHOOK_PORT (9443), DGD_WEBHOOK_CERT_DIR (unset: issued),
  DGD_WEBHOOK_SECRET_NAME, DGD_WEBHOOK_NAMESPACE, DGD_WEBHOOK_SERVICE_NAME,
  DGD_WEBHOOK_CONFIGURATION_NAME (operator-kept certificate), DGD_WEBHOOK_MANAGED (auto),
  DGD_WEBHOOK_HOST, DGD_WEBHOOK_FAILURE_POLICY (Fail), DGD_WEBHOOK_TIMEOUT_SECONDS (10),
  DGD_WEBHOOK_ORIGIN_VERSION (1.5.0), DGD_WEBHOOK_OPERATOR_USERNAME

examples:
  dgd operator                       all namespaces, current kubeconfig
  dgd operator -n team-a -n team-b   only these namespaces
"""


def register(subparsers: Any) -> None:
    """Add the `operator` subcommand."""
    parser = subparsers.add_parser(
        "operator",
        help=HELP,
        description=HELP,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="reconcile only this namespace (repeatable; overrides DGD_WATCH_NAMESPACES)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging (DGD_LOG_LEVEL=DEBUG)"
    )
    parser.set_defaults(func=run)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class LogLevelPolicy(logging.Filter):
    """Re-levels records whose library level misleads: every HTTP access line (health probes
    every few seconds, each admission review) goes to DEBUG, and kopf's ERROR for a webhook
    that refused a user's invalid graph goes to WARNING, so alerts on error logs fire on
    operator faults, not on typos."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        """Adjust the record's level in place; False drops an access line below `level`."""
        if record.name == "aiohttp.access" and record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return self.level <= logging.DEBUG
        if (
            record.name.startswith("kopf")
            and record.levelno == logging.ERROR
            and record.getMessage().startswith("Webhook ")
            and "failed permanently" in record.getMessage()
        ):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(LogLevelPolicy(logging.getLevelName(level)))
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if level != "DEBUG":
        # kopf logs every watch-stream reconnect at INFO; keep ours readable.
        logging.getLogger("kopf").setLevel(logging.WARNING)


def event_loop_factory() -> Callable[[], AbstractEventLoop]:
    """uvloop's loop where it is built (Linux, macOS), else asyncio's.

    The operator's own work is mostly reading watch streams and sending requests over TLS;
    asyncio's pure-Python SSL protocol and loop were ~15% of its CPU at 300 graphs (issue 16).
    """
    try:
        import uvloop
    except ImportError:
        import asyncio

        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(args: argparse.Namespace) -> int:
    """Run the operator until interrupted; returns the exit code."""
    import asyncio

    from dgd_operator.main import run_operator
    from dgd_operator.metrics import serve_metrics
    from dgd_operator.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"dgd operator: {exc}", file=sys.stderr)
        return 2
    if args.namespace:
        settings = dataclasses.replace(
            settings, watch_namespaces=tuple(sorted(set(args.namespace)))
        )
    if args.verbose:
        settings = dataclasses.replace(settings, log_level="DEBUG")
    _configure_logging(settings.log_level, settings.log_format)
    log = logging.getLogger("dgd_operator")
    for name in sorted(settings.extra):
        log.warning("unknown setting DGD_%s ignored", name)
    scope = ", ".join(settings.watch_namespaces) or "all namespaces"
    log.info(
        "dgd operator starting: %s; metrics :%s, health :%s",
        scope,
        settings.metrics_port,
        settings.health_port,
    )
    serve_metrics(settings.metrics_port, settings.bind_address)
    from dgd_operator.controllerkit.leaderelection import LeadershipLostError

    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(run_operator(settings))
    except KeyboardInterrupt:
        return 130
    except LeadershipLostError as exc:
        # Exit so the kubelet restarts this replica as a clean standby.
        log.error("%s; exiting", exc)
        return 1
    return 0
