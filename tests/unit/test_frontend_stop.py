"""Stop strings are found across chunk boundaries and never emitted."""

from __future__ import annotations

import pytest

from dgd_runtime.preprocess.stop import StopStringMatcher

pytestmark = pytest.mark.unit


def run(stops: list[str], chunks: list[str]) -> tuple[str, bool]:
    m = StopStringMatcher(stops)
    out = "".join(m.feed(c) for c in chunks)
    if not m.stopped:
        out += m.flush()
    return out, m.stopped


@pytest.mark.parametrize(
    ("stops", "chunks", "want"),
    [
        (["END"], ["abc", "E", "N", "D", "xyz"], ("abc", True)),
        (["END"], ["abcEN", "Dxyz"], ("abc", True)),
        (["END"], ["abcE", "Nope"], ("abcENope", False)),
        (["END"], ["abc EN"], ("abc EN", False)),  # held back, released at the end
        (["\n\n", "###"], ["line\n", "\nmore"], ("line", True)),
        (["ab", "b"], ["xab"], ("x", True)),  # earliest match wins
        (["aab"], ["a", "a", "a", "b"], ("a", True)),
        ([], ["free", " text"], ("free text", False)),
    ],
)
def test_stop_strings(stops: list[str], chunks: list[str], want: tuple[str, bool]) -> None:
    assert run(stops, chunks) == want


def test_held_text_is_not_emitted_early() -> None:
    m = StopStringMatcher(["STOP"])
    assert m.feed("go ST") == "go "
    assert m.feed("O") == ""
    assert m.feed("P!") == ""
    assert m.stopped
    assert m.feed("more") == ""
