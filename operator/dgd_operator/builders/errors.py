"""Errors raised by the builders."""

from __future__ import annotations

from dgd_operator.api.validation import Problem


class BuildError(ValueError):
    """A DGD that passed validation still cannot be turned into objects.

    `problem` names the field at fault, in the shape validation reports problems in, so
    callers report both alike; `path` and `message` are its parts.
    """

    def __init__(self, path: str, message: str) -> None:
        self.problem = Problem(path, message)
        self.path = path
        self.message = message
        super().__init__(str(self.problem))
