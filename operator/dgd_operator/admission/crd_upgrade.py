"""Apply the operator's own CustomResourceDefinitions in place when it starts (Dynamo's
`upgradeCRD`): upgrading the chart (or the image) upgrades the CRDs too, which Helm never does.

The CRDs are package data (`dgd_operator/crds/*.yaml`, the same files as the repository's
`crds/` and the chart's, kept identical by `make crds`). Each is created when missing and
otherwise replaced whole (a PUT of our spec over the live object, so a field a newer release
dropped goes too); nothing is ever deleted. A CRD whose live spec already holds everything ours
says costs one GET and no write, so restarts are free.

What is not ours to decide is kept from the live object: `status` (`storedVersions` is handled
by `migration`), labels and annotations added by others, and the conversion webhook's
`caBundle` (unless the caller brings one). The conversion webhook itself is pointed where the
operator serves it when the operator knows that (its Service, from the chart's settings);
otherwise the live `spec.conversion` is kept as found (a local control plane registers its own
URL). Taking over CRDs that Dynamo's operator installed replaces its conversion with ours.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from dgd_operator.admission.certificates import CRD_PATH
from dgd_operator.controllerkit.kube import KubeClient
from dgd_operator.controllerkit.kubeapi import ConflictError, NotFoundError

log = logging.getLogger(__name__)

PACKAGED_CRDS: Final = Path(__file__).resolve().parents[1] / "crds"
RESOURCE: Final = "customresourcedefinitions"


def packaged_crds(directory: Path = PACKAGED_CRDS) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition shipped with the operator, in file order."""
    # The DGD CRD is ~10k lines: libyaml's loader when present (pure Python takes seconds).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crds: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=loader):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                crds.append(doc)
    return crds


def first_difference(live: Any, ours: Any, path: str = "") -> str | None:
    """The first path where `live` lacks or differs from a value `ours` sets; None when `live`
    holds all of `ours` (the API server's defaults may add more, and it drops empty maps and
    lists such as a schema's `properties: {}`)."""
    if live is None and isinstance(ours, Mapping | list) and not ours:
        return None
    if isinstance(ours, Mapping):
        if not isinstance(live, Mapping):
            return path or "."
        for key, value in ours.items():
            found = first_difference(live.get(key), value, f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(ours, list):
        if not isinstance(live, list) or len(live) != len(ours):
            return path or "."
        for index, (a, b) in enumerate(zip(live, ours, strict=True)):
            found = first_difference(a, b, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    return None if live == ours else (path or ".")


def covers(live: Any, ours: Any) -> bool:
    """True when `live` holds every value `ours` sets (see `first_difference`)."""
    return first_difference(live, ours) is None


def desired_crd(
    ours: Mapping[str, Any],
    live: Mapping[str, Any] | None,
    client_config: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The CRD to write: our spec, with what belongs to others taken from `live`.

    `client_config` is the conversion webhook's `clientConfig` (a `service` or a `url`, with or
    without `caBundle`); None keeps the live `spec.conversion`.
    """
    out = copy.deepcopy(dict(ours))
    spec = out["spec"]
    live_conversion = copy.deepcopy((live or {}).get("spec", {}).get("conversion"))
    if "conversion" in spec:
        if client_config is None:
            if live_conversion is not None:
                spec["conversion"] = live_conversion
            else:
                spec.pop("conversion")  # nothing serves conversion here yet: the default
        else:
            config = copy.deepcopy(dict(client_config))
            spec["conversion"]["webhook"]["clientConfig"] = config
            bundle = ((live_conversion or {}).get("webhook") or {}).get("clientConfig") or {}
            if "caBundle" not in config and bundle.get("caBundle"):
                config["caBundle"] = bundle["caBundle"]
    if live is not None:
        meta = out.setdefault("metadata", {})
        live_meta = live.get("metadata") or {}
        for key in ("labels", "annotations"):
            merged = {**(live_meta.get(key) or {}), **(meta.get(key) or {})}
            if merged:
                meta[key] = merged
        meta["resourceVersion"] = live_meta.get("resourceVersion")
    return out


async def upgrade_crds(
    client: KubeClient,
    crds: Sequence[Mapping[str, Any]],
    *,
    client_config: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create or replace each of `crds` unless the live one already matches; the names written.

    `client_config` is where the CRDs' conversion webhook must point (`desired_crd`).
    """
    written: list[str] = []
    for crd in crds:
        name = str(crd["metadata"]["name"])
        for _attempt in range(3):  # a concurrent writer (another replica) costs a re-read
            try:
                live = await client.request(
                    "GET", f"{CRD_PATH}/{name}", verb="get", resource=RESOURCE
                )
            except NotFoundError:
                live = None
            desired = desired_crd(crd, live, client_config)
            wanted = {k: desired[k] for k in ("metadata", "spec")}
            difference = None if live is None else first_difference(live, wanted)
            if live is not None and difference is None:
                break
            try:
                if live is None:
                    await client.request(
                        "POST", CRD_PATH, verb="create", resource=RESOURCE, body=desired
                    )
                else:
                    await client.request(
                        "PUT", f"{CRD_PATH}/{name}", verb="update", resource=RESOURCE, body=desired
                    )
            except ConflictError:
                continue  # changed (or created) since the GET: read it again
            written.append(name)
            if live is None:
                log.info("CRD %s created", name)
            else:
                log.info("CRD %s upgraded in place (first difference: %s)", name, difference)
            break
        else:
            raise ConflictError(409, "Conflict", f"CRD {name} kept changing while it was upgraded")
    return written
