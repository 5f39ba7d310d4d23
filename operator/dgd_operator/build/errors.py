"""Errors raised by the builders."""

from __future__ import annotations


class BuildError(ValueError):
    """A DGD that passed validation still cannot be turned into objects; `path` names the field."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class MultinodeNotSupportedYet(NotImplementedError):  # noqa: N818 (name fixed by the team contract)
    """A multinode service (`multinode.nodeCount >= 2`) whose workload builder is not wired in yet."""

    def __init__(self, service: str) -> None:
        self.service = service
        super().__init__(
            f"spec.services.{service}.multinode: multinode services are not rendered yet "
            "(leader/worker StatefulSet groups are under construction)"
        )
