"""What the kubectl user reads: the denial message and the admission warnings."""

from __future__ import annotations

from collections.abc import Collection

from dgd_operator.api.validation import Problem

# The API server shows each warning on one line and may drop long ones.
MAX_WARNING_LENGTH = 240
MAX_LISTED_PROBLEMS = 25


def rejection_message(kind: str, name: str | None, errors: Collection[Problem]) -> str:
    """One message for the kubectl user: a summary line, then one `path: message` per line."""
    count = len(errors)
    subject = f"{kind} {name!r}" if name else kind
    lines = [f"{subject} is invalid ({count} problem{'s' if count != 1 else ''}):"]
    listed = list(errors)[:MAX_LISTED_PROBLEMS]
    lines.extend(f"  {problem}" for problem in listed)
    if count > len(listed):
        lines.append(f"  ... and {count - len(listed)} more (run `dgd validate` on the file)")
    return "\n".join(lines)


def warning_text(problem: Problem) -> str:
    """An admission warning: one line, short enough that the API server keeps it."""
    text = " ".join(str(problem).split())
    if len(text) > MAX_WARNING_LENGTH:
        text = text[: MAX_WARNING_LENGTH - 3].rstrip() + "..."
    return text
