"""Find our CustomResourceDefinitions and install them into a cluster.

Lookup order: ``$DGD_CRDS_DIR``; a ``crds/`` directory shipped inside the installed package
(``dgd_operator/crds``); the repository's top-level ``crds/`` (editable installs and tests).
When none exists (an installed wheel), the control plane generates them from the API models.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml

from dgd_operator.dev.rest import ApiError, JsonDict, KubeRest

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def crd_dir_candidates() -> list[Path]:
    """Directories searched for CRD YAML files, most specific first."""
    here = Path(__file__).resolve()
    candidates = []
    explicit = os.environ.get("DGD_CRDS_DIR")
    if explicit:
        candidates.append(Path(explicit))
    candidates.append(here.parents[1] / "crds")  # dgd_operator/crds (packaged copy)
    candidates.append(here.parents[3] / "crds")  # <repo>/crds (source checkout)
    return candidates


def find_crd_dir() -> Path | None:
    """The first candidate directory that holds at least one ``*.yaml`` file, or None."""
    for candidate in crd_dir_candidates():
        if candidate.is_dir() and any(candidate.glob("*.yaml")):
            return candidate
    return None


def load_crds(directory: Path) -> list[JsonDict]:
    """Every CustomResourceDefinition document in ``directory/*.yaml`` (multi-doc aware)."""
    crds: list[JsonDict] = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                crds.append(doc)
    return crds


def _established(crd: JsonDict) -> bool:
    return any(
        c.get("type") == "Established" and c.get("status") == "True"
        for c in crd.get("status", {}).get("conditions", []) or []
    )


def install_crds(rest: KubeRest, crds: list[JsonDict], timeout: float = 60.0) -> list[str]:
    """Create or update ``crds`` and wait until each is Established. Returns their names.

    Raises TimeoutError naming the CRDs that did not become Established, and ApiError (with
    the server's message) when the server rejects one.
    """
    names: list[str] = []
    for crd in crds:
        name = crd["metadata"]["name"]
        names.append(name)
        try:
            rest.post(CRD_PATH, crd)
        except ApiError as exc:
            if exc.status != 409:
                raise
            current = rest.get(f"{CRD_PATH}/{name}")
            body = {
                **crd,
                "metadata": {
                    **crd["metadata"],
                    "resourceVersion": current["metadata"]["resourceVersion"],
                },
            }
            rest.put(f"{CRD_PATH}/{name}", body)
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        pending = [n for n in pending if not _established(rest.get(f"{CRD_PATH}/{n}"))]
        if not pending:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"CRDs not Established after {timeout:g}s: {', '.join(pending)}")
        time.sleep(0.1)
    return names
