"""Stop strings detected incrementally across chunk boundaries.

Text that could be the start of a stop string is held back until it is disambiguated, so the
stop string itself is never emitted, even when it is split over several tokens.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopStringMatcher:
    """Feed text deltas; get back the text safe to emit and whether a stop string was hit."""

    __slots__ = ("_held", "_stops", "stopped")

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add `text`; return what can be emitted now. After a hit, `stopped` is True."""
        if self.stopped:
            return ""
        buf = self._held + text
        cut = -1
        for stop in self._stops:
            pos = buf.find(stop)
            if pos != -1 and (cut == -1 or pos < cut):
                cut = pos
        if cut != -1:
            self.stopped = True
            self._held = ""
            return buf[:cut]
        hold = 0
        for stop in self._stops:
            # Longest suffix of buf that is a proper prefix of this stop string.
            for k in range(min(len(stop) - 1, len(buf)), hold, -1):
                if buf.endswith(stop[:k]):
                    hold = k
                    break
        if hold:
            self._held = buf[-hold:]
            return buf[:-hold]
        self._held = ""
        return buf

    def flush(self) -> str:
        """End of stream without a hit: release the held-back text."""
        held, self._held = self._held, ""
        return "" if self.stopped else held
