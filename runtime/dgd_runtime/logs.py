"""Logging setup shared by every runtime process (frontend, workers).

Text lines for a terminal by default; one JSON object per line when
`DYN_LOGGING_CONSOLE_FORMAT=jsonl` (or the legacy `DYN_LOGGING_JSONL=1`), as Dynamo's images
select it, so a log collector gets `time`, `level`, `target` and `message` as fields.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_TRUE = frozenset({"1", "true", "yes", "on"})


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, microseconds), level, target (logger), message."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        doc: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "level": record.levelname,
            "target": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def wants_json(env: Mapping[str, str]) -> bool:
    """True when the environment asks for JSON lines (Dynamo's two spellings)."""
    if env.get("DYN_LOGGING_CONSOLE_FORMAT", "").strip().lower() == "jsonl":
        return True
    return env.get("DYN_LOGGING_JSONL", "").strip().lower() in _TRUE


def configure_logging(
    level: str, *, env: Mapping[str, str] | None = None, stream: TextIO | None = None
) -> None:
    """Configure the root logger at `level` (a name such as "info"), text or JSON per `env`."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    use_json = wants_json(os.environ if env is None else env)
    handler.setFormatter(JsonLineFormatter() if use_json else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(
        level=getattr(logging, str(level).upper(), logging.INFO), handlers=[handler], force=True
    )
