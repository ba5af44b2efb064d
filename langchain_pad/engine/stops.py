"""Stop sequences matched on text, across token boundaries.

A stop sequence can span several tokens and can start in the middle of one, so it is
matched on the decoded text. Text that could still be the beginning of a stop
sequence is held back until it is known not to be; when a stop sequence completes,
the text before it is released and the stop text itself is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    """Filters one row's text stream, holding back possible stop-sequence prefixes."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stops)
        self._pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Add text; return ``(text safe to release, whether a stop sequence completed)``."""
        if not self._stops:
            return text, False
        buffer = self._pending + text
        hits = [i for i in (buffer.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._pending = ""
            return buffer[: min(hits)], True
        hold = self._longest_stop_prefix_suffix(buffer)
        self._pending = buffer[len(buffer) - hold :] if hold else ""
        return buffer[: len(buffer) - hold], False

    def flush(self) -> str:
        """Release held-back text when the row ends for another reason."""
        text, self._pending = self._pending, ""
        return text

    def _longest_stop_prefix_suffix(self, buffer: str) -> int:
        best = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), best, -1):
                if buffer.endswith(stop[:size]):
                    best = size
                    break
        return best
