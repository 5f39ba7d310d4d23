"""The local supervisor's back-off and its reports, with a fake clock and tiny real processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dgd_runtime.local.supervisor import (
    Process,
    Supervisor,
    describe_exit,
    log_says,
    restart_delay,
)

pytestmark = pytest.mark.unit
SLEEP = "import time; time.sleep(60)"


@pytest.mark.parametrize(
    ("exits", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (40, 30.0)]
)
def test_restart_delay_doubles_up_to_the_cap(exits: int, delay: float) -> None:
    assert restart_delay(exits) == delay


@pytest.mark.parametrize(
    ("code", "text"),
    [(0, "exited with code 0"), (3, "exited with code 3"), (-9, "was killed by SIGKILL")],
)
def test_describe_exit(code: int, text: str) -> None:
    assert describe_exit(code) == text


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _wait_exit(process: Process) -> None:
    assert process.popen is not None
    process.popen.wait(30)


def test_crash_loop_backs_off_and_reports_each_exit(tmp_path: Path) -> None:
    lines: list[str] = []
    clock = FakeClock()
    sup = Supervisor(lines.append, clock=clock, restarting=True)
    script = "print('dgd worker ready instance=x'); import sys; sys.exit(3)"
    crasher = sup.add(
        Process(
            "w-0",
            [sys.executable, "-c", script],
            {},
            tmp_path / "w-0.log",
            log_says("dgd worker ready"),
            "W",
        )
    )
    try:
        delays = []
        for _ in range(3):
            _wait_exit(crasher)
            sup.poll()
            assert crasher.restart_at is not None
            delays.append(crasher.restart_at - clock.now)
            clock.now = crasher.restart_at
            sup.poll()  # restarts it
        assert delays == [1.0, 2.0, 4.0]
        assert crasher.restarts == 3
        assert "w-0 (pid" in lines[0] and "exited with code 3 after 0.0s" in lines[0]
        assert "restarting it in 1s; W: 0/1 ready (its requests fail until one is back)" in lines[0]
        assert "  dgd worker ready instance=x" in lines[0]  # the log tail of a failed exit
        assert lines[1].startswith("w-0: restarted (pid ")
        assert "(exit 2 in a row: back-off)" in lines[2]
        # The log keeps every run; readiness is judged from the latest start only.
        assert crasher.log.read_text().count("dgd worker ready") >= 3
    finally:
        sup.stop(5)


def test_backoff_is_forgotten_after_a_stable_run(tmp_path: Path) -> None:
    lines: list[str] = []
    clock = FakeClock()
    sup = Supervisor(lines.append, clock=clock, restarting=True, stable_after=60)
    proc = sup.add(
        Process("w-0", [sys.executable, "-c", SLEEP], {}, tmp_path / "w.log", lambda p: True, "W")
    )
    try:
        proc.exits_in_a_row = 4
        clock.now = 59
        sup.poll()
        assert proc.exits_in_a_row == 4
        clock.now = 61
        sup.poll()
        assert proc.exits_in_a_row == 0
        assert proc.ready
        assert proc.popen is not None
        proc.popen.kill()
        _wait_exit(proc)
        sup.poll()
        assert proc.restart_at == 62.0  # one second: a fresh back-off
        assert "was killed by SIGKILL after 61.0s" in lines[-1]
    finally:
        sup.stop(5)
    assert sup.pids() == []
