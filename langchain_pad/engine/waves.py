"""One running wave of the interleaved scheduler, advanced a decoding step at a time.

Kept apart from :mod:`scheduler` (which decides what runs): this only turns a wave's
event stream into deliveries, one forward pass per call, and ends the wave's streams.
"""

from __future__ import annotations

from collections.abc import Iterator

from langchain_pad.engine.loop import WaveStats
from langchain_pad.engine.tickets import RequestTicket
from langchain_pad.engine.types import TokenEvent

__all__ = ["ActiveWave"]


class ActiveWave:
    """One wave's event stream, advanced a decoding step at a time."""

    def __init__(
        self,
        tickets: list[RequestTicket],
        events: Iterator[TokenEvent],
        stats: WaveStats,
        finished: set[int],
    ) -> None:
        self.tickets = tickets
        self.events = events
        self.stats = stats
        self.finished = finished
        """Rows whose stream has ended (shared with the wave's row-error sink)."""

    def step(self) -> bool:
        """Deliver the events of (about) one more forward pass; False once the wave ended."""
        start = self.stats.forward_passes
        delivered = 0
        try:
            while True:
                event = next(self.events)
                self.tickets[event.row].deliver(event)
                if event.finish_reason is not None:
                    self.finished.add(event.row)
                if self.stats.forward_passes > start:
                    delivered += 1
                    if delivered >= self.stats.batch_sizes[-1]:
                        return True
        except StopIteration:
            pass
        except BaseException as exc:  # hand the failure to every caller still waiting
            for row, ticket in enumerate(self.tickets):
                if row not in self.finished:
                    ticket.deliver(exc)
                    self.finished.add(row)
            if not isinstance(exc, Exception):
                raise
        for row, ticket in enumerate(self.tickets):
            if row not in self.finished:
                ticket.deliver(None)  # cancelled rows: end their streams
        return False
