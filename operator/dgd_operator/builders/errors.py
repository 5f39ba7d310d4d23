"""Errors raised by the builders."""

from __future__ import annotations


class BuildError(ValueError):
    """A DGD that passed validation still cannot be turned into objects; `path` names the field."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)

