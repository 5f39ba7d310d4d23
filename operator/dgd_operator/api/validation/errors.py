"""The one "problem at a field path" type, and pydantic's errors turned into such problems."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from dgd_operator.api import k8s
from dgd_operator.api.models import MAX_SERVICES

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One error or warning, anchored at a field path such as `spec.services.decode.replicas`.

    Used by validation, topology admission, the builders (`BuildError.problem`) and the
    admission webhook alike.
    """

    path: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def warning(path: str, message: str) -> Problem:
    """A problem that does not reject the object."""
    return Problem(path, message, "warning")


class DGDValidationError(Exception):
    """Raised by `parse_dgd` for an invalid DGD; `.problems` names every bad field."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(
            "; ".join(str(p) for p in self.problems) or "invalid DynamoGraphDeployment"
        )


join = k8s.join
describe = k8s.describe


def show(value: object) -> str:
    """A value for a message: strings quoted, everything else described."""
    return repr(value) if isinstance(value, str) else describe(value)


def service_path(service_name: str) -> str:
    """Field path of one service (`spec.services.<name>`)."""
    return join("spec.services", service_name)


def get_path(doc: Mapping[str, Any], *keys: str) -> Any:
    """`doc[k1][k2]...`, or None where a level is missing or not a mapping."""
    value: Any = doc
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def merge(first: list[Problem], second: list[Problem]) -> list[Problem]:
    """Both lists, without a second problem for a path the first already names."""
    paths = {p.path for p in first}
    return first + [p for p in second if p.path not in paths]


def problems_from_pydantic(exc: ValidationError) -> list[Problem]:
    """One problem per distinct pydantic error, anchored at its Kubernetes-style path."""
    problems: list[Problem] = []
    seen: set[Problem] = set()
    for error in exc.errors(include_url=False):
        loc = [part for part in error["loc"] if part != "[key]"]
        problem = Problem(loc_to_path(loc), _error_message(error, loc))
        if problem not in seen:
            seen.add(problem)
            problems.append(problem)
    return problems


def loc_to_path(loc: Iterable[int | str]) -> str:
    """A pydantic location as a field path: `spec.services.x.envs[0].name`."""
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else join(path, part)
    return path


def _error_message(error: Any, loc: list[int | str]) -> str:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    got = describe(value)
    if kind == "missing":
        return "required"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be an integer, got {got}"
    if kind == "string_type":
        hint = (
            f' (quote it: "{value}")'
            if isinstance(value, int | float) and not isinstance(value, bool)
            else ""
        )
        return f"must be a string, got {got}{hint}"
    if kind == "bool_type":
        return f"must be true or false, got {got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping, got {got}"
    if kind == "list_type":
        return f"must be a list, got {got}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx.get('ge')}, got {value}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {show(value)}"
    if kind == "too_long":
        if loc == ["spec", "services"]:
            return f"at most {MAX_SERVICES} services are allowed, got {ctx.get('actual_length')}"
        return f"at most {ctx.get('max_length')} items are allowed, got {ctx.get('actual_length')}"
    if kind == "extra_forbidden":
        if loc == ["spec", "services"]:
            return (
                "unknown field: v1beta1 lists components in spec.components (for a v1alpha1 "
                "document say apiVersion: nvidia.com/v1alpha1, or run `dgd convert --to v1beta1`)"
            )
        return "unknown field (v1beta1 is strict: the API server refuses fields it does not know)"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}, got {show(value)}"
    message: str = error.get("msg", "invalid value")
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
        return message
    return message[:1].lower() + message[1:]
