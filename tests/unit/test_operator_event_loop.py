"""The operator runs on uvloop where it is built: its loop and TLS in C (issue 16)."""

from __future__ import annotations

import pytest
import uvloop

from dgd_operator.commands.operator import event_loop_factory

pytestmark = pytest.mark.unit


def test_the_operator_loop_is_uvloop() -> None:
    factory = event_loop_factory()
    assert factory is uvloop.new_event_loop
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
