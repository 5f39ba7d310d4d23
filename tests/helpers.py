"""Helpers shared by test tiers: polling with readable failures, and Kubernetes client bundles.

Importing this module is cheap: the kubernetes client is imported only by :func:`make_kube_api`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from dgd_operator.dev.rest import KubeRest

T = TypeVar("T")

_MAX_SHOWN = 2000


class WaitTimeoutError(AssertionError):
    """wait_for gave up: says what was awaited, for how long, and what was seen last."""


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + f"... ({len(text)} chars)"


def _timeout_error(
    description: str, timeout: float, attempts: int, last: object, error: BaseException | None
) -> WaitTimeoutError:
    lines = [f"timed out after {timeout:g}s ({attempts} checks) waiting for {description}"]
    lines.append(f"last observed value: {_describe(last)}")
    if error is not None:
        lines.append(f"last check raised: {type(error).__name__}: {error}")
    return WaitTimeoutError("\n".join(lines))


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 30.0,
    interval: float = 0.1,
    description: str = "condition",
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that value.

    An exception inside ``predicate`` counts as "not yet" (e.g. a 404 before an object exists)
    and is shown if the wait times out. On timeout raises :class:`WaitTimeoutError` (an
    AssertionError) naming ``description`` and the last value observed. Blocking: the
    operator under test runs in its own thread (see tests/integration/operator_harness.py).
    """
    deadline = time.monotonic() + timeout
    attempts = 0
    last: object = None
    error: BaseException | None = None
    while True:
        attempts += 1
        try:
            value = predicate()
        except Exception as exc:
            error, last = exc, None
        else:
            error = None
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise _timeout_error(description, timeout, attempts, last, error)
        time.sleep(interval)


def wait_reconciled_after(
    controller: Any,
    trigger: Callable[[], object],
    keys: int = 1,
    timeout: float = 30.0,
    description: str = "the controller to reconcile past the trigger",
) -> None:
    """Barrier for "nothing happens": run ``trigger`` (events the controller watches, for
    ``keys`` distinct DGDs), then wait until the controller has finished that many reconciles
    since and has nothing queued. Assertions made afterwards see the controller's answer to
    those events, where a sleep window would only hope to."""
    since = controller.reconciles
    trigger()
    wait_for(
        lambda: controller.reconciles >= since + keys and len(controller.queue) == 0,
        timeout=timeout,
        description=description,
    )


def pruned_fields(submitted: Any, returned: Any, path: str = "") -> list[str]:
    """Dotted paths present in ``submitted`` but missing from ``returned``: what the API server
    pruned (or dropped). Lists are compared index by index (``spec.args[2]``)."""
    missing: list[str] = []
    if isinstance(submitted, Mapping):
        if not isinstance(returned, Mapping):
            return [path or "<root>"]
        for key, value in submitted.items():
            child = f"{path}.{key}" if path else str(key)
            if key not in returned:
                missing.append(child)
            else:
                missing.extend(pruned_fields(value, returned[key], child))
    elif isinstance(submitted, list) and isinstance(returned, list):
        for index, (sub, ret) in enumerate(zip(submitted, returned, strict=False)):
            missing.extend(pruned_fields(sub, ret, f"{path}[{index}]"))
    return missing


@dataclasses.dataclass
class KubeApi:
    """The kubernetes client's API groups tests use, sharing one ApiClient.

    ``rest`` is dgd's small JSON client (dict in, dict out) for the same cluster.
    """

    client: Any  # kubernetes.client.ApiClient
    core: Any  # CoreV1Api
    apps: Any  # AppsV1Api
    custom: Any  # CustomObjectsApi
    apiext: Any  # ApiextensionsV1Api
    rest: KubeRest

    def close(self) -> None:
        """Close connection pools (avoids ResourceWarnings, which are errors in our tests)."""
        self.client.close()
        self.rest.close()


def make_kube_api(kubeconfig: Path) -> KubeApi:
    """A :class:`KubeApi` for the cluster in ``kubeconfig`` (does not touch global config)."""
    from kubernetes import client, config

    from dgd_operator.dev.rest import KubeRest

    new_client: Any = config.new_client_from_config  # untyped in the kubernetes package
    api_client = new_client(config_file=str(kubeconfig))
    return KubeApi(
        client=api_client,
        core=client.CoreV1Api(api_client),
        apps=client.AppsV1Api(api_client),
        custom=client.CustomObjectsApi(api_client),
        apiext=client.ApiextensionsV1Api(api_client),
        rest=KubeRest.from_kubeconfig(kubeconfig),
    )


def yaml_documents(path: Path) -> Iterator[dict[str, Any]]:
    """The mapping documents of a (multi-document) YAML file."""
    import yaml

    for doc in yaml.safe_load_all(path.read_text()):
        if isinstance(doc, dict):
            yield doc
