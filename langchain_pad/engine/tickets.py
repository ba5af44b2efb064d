"""What a caller holds while the decoding thread serves its request: tickets and sinks.

Plain values shared by :class:`~langchain_pad.engine.scheduler.BatchScheduler` and its
callers (the runtime, the chat model, the server), kept apart from the thread's own
scheduling so each reads on its own.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from langchain_pad.engine.types import GenerationRequest, TokenEvent

__all__ = [
    "EngineClosedError",
    "EventSink",
    "QueueTimeoutError",
    "RequestTicket",
    "SchedulerTotals",
    "generation_timeout",
    "ticket_tokens",
]

EventSink = Callable[[TokenEvent | BaseException | None], None]
"""Receives each event of a request, then ``None`` at the end, or the error that ended it."""


def generation_timeout(timeout: float | None) -> TimeoutError:
    """The error every caller raises when a request outlives its ``timeout``."""
    return TimeoutError(
        f"Generation did not finish within timeout={timeout} s; "
        "raise the timeout or lower max_tokens."
    )


@dataclass
class SchedulerTotals:
    """Counters since the scheduler started: bounded memory, however long it runs."""

    waves: int = 0
    rows: int = 0


class QueueTimeoutError(TimeoutError):
    """A request waited ``queue_timeout`` s without its wave starting, and was withdrawn.

    Nothing of it was decoded, so retrying later is safe. A ``TimeoutError``, so code
    that already handles timeouts handles this one too; a server answers it with 503
    and ``Retry-After`` rather than 504, because the request never ran.
    """

    def __init__(self, queue_timeout: float, ahead_rows: int, ahead_tokens: int) -> None:
        self.queue_timeout = queue_timeout
        self.ahead_rows = ahead_rows
        self.ahead_tokens = ahead_tokens
        super().__init__(
            f"The request waited {queue_timeout:g} s in the decoding queue without starting "
            f"(queue_timeout={queue_timeout:g}): {ahead_rows} request(s) holding "
            f"{ahead_tokens} prompt + new tokens were decoding or queued ahead of it. Nothing "
            "was decoded; retry later, or raise queue_timeout."
        )


class EngineClosedError(RuntimeError):
    """The scheduler was shut down; no request can be submitted any more."""


@dataclass
class RequestTicket:
    """A submitted request; ``cancel()`` makes it leave its batch at the next step."""

    request: GenerationRequest
    sink: EventSink
    submitted: float = field(default_factory=time.monotonic)
    _cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._cancelled.set()

    def deliver(self, item: TokenEvent | BaseException | None) -> None:
        """Hand an item to the caller; a caller that is gone (closed event loop) cancels."""
        try:
            self.sink(item)
        except Exception:
            self.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()


class _QueueSink:
    """Blocking iterator over a request's events, for synchronous callers."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[TokenEvent | BaseException | None] = queue.SimpleQueue()

    def __call__(self, item: TokenEvent | BaseException | None) -> None:
        self.queue.put(item)

    def iterate(self, ticket: RequestTicket, timeout: float | None) -> Iterator[TokenEvent]:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    item = self.queue.get(timeout=wait)
                except queue.Empty:
                    raise generation_timeout(timeout) from None
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            ticket.cancel()  # no-op when finished; frees the row when the caller stops early


def ticket_tokens(ticket: RequestTicket) -> int:
    """What a request may grow to in a wave: its prompt and every token it may add."""
    request = ticket.request
    return len(request.prompt_ids) + request.params.max_new_tokens
