"""Which engine framework a service runs (Dynamo's hybrid detection)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from dgd_operator.builders.backends.types import Backend, BackendError

WORKER_COMPONENT_TYPES = frozenset({"worker", "prefill", "decode"})
FRAMEWORKS: tuple[Backend, ...] = ("vllm", "sglang", "trtllm")
_DETECTORS = {
    framework: re.compile(r"python[0-9.]*\s+[^|&;]*-m\s+[^|&;]*dynamo\." + framework + r"[^|&;]*")
    for framework in FRAMEWORKS
}


def detect_frameworks(command: Sequence[str], args: Sequence[str]) -> list[Backend]:
    """Frameworks whose `python -m dynamo.<fw>` invocation appears in command + args."""
    line = " ".join([*command, *args])
    return [fw for fw in FRAMEWORKS if _DETECTORS[fw].search(line)]


def resolve_backend(
    component_type: str | None,
    main_container: Mapping[str, Any] | None,
    explicit: str | None,
) -> Backend:
    """Backend of a service: detected > `spec.backendFramework` > `noop`.

    Non-worker components (anything but worker/prefill/decode) are always `noop`. Raises
    `BackendError` when detection and `backendFramework` disagree ("backend framework
    mismatch"), or when several frameworks are detected and no `backendFramework` decides.
    """
    if component_type not in WORKER_COMPONENT_TYPES:
        return "noop"
    container = main_container or {}
    command = [str(t) for t in container.get("command") or []]
    args = [str(t) for t in container.get("args") or []]
    detected = detect_frameworks(command, args) if (command or args) else []
    if len(detected) == 1:
        if explicit and explicit != detected[0]:
            raise BackendError(
                f"backend framework mismatch: detected {detected[0]!r} from the command but "
                f"spec.backendFramework is {explicit!r}"
            )
        return detected[0]
    if explicit:
        return explicit  # type: ignore[return-value]  # validated by the API model's Literal
    if len(detected) > 1:
        raise BackendError(
            f"could not determine backend framework: multiple frameworks detected from the "
            f"command ({', '.join(detected)}); set spec.backendFramework"
        )
    return "noop"
