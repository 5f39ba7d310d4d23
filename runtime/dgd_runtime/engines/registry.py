"""Engine name -> the class that builds it, imported only when chosen.

An entry is an import string ``"module:Class"``; the class implements
:class:`~dgd_runtime.engines.base.EngineSpec`. Importing this module imports no engine, so the
engines with heavy dependencies (vLLM, ...) stay optional extras: choosing one that is not
installed is a clear error naming the extra, never an import failure at start-up of every worker.
"""

from __future__ import annotations

import importlib
from typing import Final, cast

from dgd_runtime.engines.base import EngineSpec

ENGINES: Final[dict[str, str]] = {
    "mock": "dgd_runtime.engines.mock:MockEngine",
    "vllm": "dgd_runtime.engines.vllm:VllmEngine",
}
"""Every engine the worker can serve, by its ``--engine`` name."""

EXTRAS: Final[dict[str, str]] = {"vllm": "vllm"}
"""The optional dependency group (``pip install 'dgd-platform[<extra>]'``) an engine needs."""


class EngineError(ValueError):
    """An engine name that cannot be served (a usage error: the worker exits 2)."""


class UnknownEngineError(EngineError):
    """The name is not in :data:`ENGINES`."""


class EngineUnavailableError(EngineError):
    """The engine is known but its module (or a dependency of it) cannot be imported."""


def engine_names() -> list[str]:
    """The known engine names, sorted."""
    return sorted(ENGINES)


def load_engine(name: str) -> EngineSpec:
    """Import and return the class registered as ``name``."""
    target = ENGINES.get(name)
    if target is None:
        raise UnknownEngineError(
            f"unknown engine {name!r}; known engines: {', '.join(engine_names())}"
        )
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = EXTRAS.get(name)
        hint = (
            f" (install the optional extra: pip install 'dgd-platform[{extra}]')" if extra else ""
        )
        raise EngineUnavailableError(f"engine {name!r} is not available: {exc}{hint}") from exc
    return cast(EngineSpec, getattr(module, attr))
