"""Runtime logging: text by default, JSON lines when Dynamo's environment switch asks for it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from dgd_runtime.logs import configure_logging, wants_json

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"DYN_LOGGING_CONSOLE_FORMAT": "jsonl"}, True),
        ({"DYN_LOGGING_CONSOLE_FORMAT": "JSONL"}, True),
        ({"DYN_LOGGING_CONSOLE_FORMAT": "text"}, False),
        ({"DYN_LOGGING_JSONL": "1"}, True),
        ({"DYN_LOGGING_JSONL": "true"}, True),
        ({"DYN_LOGGING_JSONL": "0"}, False),
    ],
)
def test_wants_json(env: dict[str, str], expected: bool) -> None:
    assert wants_json(env) is expected


def test_jsonl_lines_carry_level_target_and_message() -> None:
    out = io.StringIO()
    configure_logging("debug", env={"DYN_LOGGING_CONSOLE_FORMAT": "jsonl"}, stream=out)
    logging.getLogger("dgd_runtime.frontend").warning("model %s is %s", "m", "ready")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("dgd_runtime.worker").exception("failed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "WARNING"
    assert first["target"] == "dgd_runtime.frontend"
    assert first["message"] == "model m is ready"
    assert first["time"].endswith("+00:00")
    assert second["level"] == "ERROR"
    assert "ValueError: boom" in second["exception"]


def test_text_by_default_and_level_applies() -> None:
    out = io.StringIO()
    configure_logging("warning", env={}, stream=out)
    logging.getLogger("x").info("hidden")
    logging.getLogger("x").warning("shown")
    text = out.getvalue()
    assert "hidden" not in text
    assert text.rstrip().endswith("WARNING x: shown")
