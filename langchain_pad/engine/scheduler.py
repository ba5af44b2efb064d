"""One decoding thread per engine, batching whatever requests are waiting.

Every forward pass of a model happens on this thread. That gives callers from any
thread or event loop the same behaviour (torch's no-grad mode is per thread, and
LangChain's default async streaming hops threads between tokens), and it lets
concurrent callers share forward passes: requests waiting when a wave starts are
decoded together in one batch. ``gathering(n)`` holds the start of the next wave
until ``n`` requests have arrived, so that ``batch([...])`` becomes one real batch.
``batch_window`` does the same for independent callers (a server's concurrent
requests): a wave starts that many seconds after its first request arrived, or as
soon as it is full, so requests arriving a few milliseconds apart share one batch.
``max_waves > 1`` lets requests that arrive while a wave runs start their own wave at
once instead of waiting for it to end: the thread then decodes up to that many waves,
one step of each in turn (each wave still batched within itself).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator

from langchain_pad.engine.guidance import StepGuide
from langchain_pad.engine.loop import DecodingEngine, WaveStats
from langchain_pad.engine.threads import WaveThreads
from langchain_pad.engine.tickets import (
    EngineClosedError,
    EventSink,
    QueueTimeoutError,
    RequestTicket,
    SchedulerTotals,
    _QueueSink,
    ticket_tokens,
)
from langchain_pad.engine.types import GenerationRequest, TokenEvent
from langchain_pad.engine.waves import ActiveWave


class BatchScheduler:
    """Runs an engine on a dedicated daemon thread, in waves of batched requests."""

    def __init__(
        self,
        engine: DecodingEngine,
        *,
        guide: StepGuide | None = None,
        max_batch_size: int = 32,
        gather_timeout: float = 2.0,
        batch_window: float = 0.0,
        max_waves: int = 1,
        stats_window: int = 256,
        token_budget: int | None = None,
        queue_timeout: float | None = None,
        prefill_budget: int | None = None,
        single_row_threads: int | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}.")
        self.engine = engine
        self.guide = guide
        self.max_batch_size = max_batch_size
        self.gather_timeout = gather_timeout
        self.batch_window = batch_window
        """Seconds a wave waits, after its first request arrived, for more requests."""
        if max_waves < 1:
            raise ValueError(f"max_waves must be >= 1, got {max_waves}.")
        self.max_waves = max_waves
        """Waves decoded at once, a step of each in turn (1: one wave after another)."""
        if token_budget is not None and token_budget < 1:
            raise ValueError(f"token_budget must be None or >= 1, got {token_budget}.")
        self.token_budget = token_budget
        """Most prompt + new tokens decoded at once, across the running waves: what a
        wave's KV caches and hidden states grow to. Rows past it wait for room (a row
        larger than the whole budget runs alone). None: rows are capped only by
        ``max_batch_size``."""
        if prefill_budget is not None and prefill_budget < 1:
            raise ValueError(f"prefill_budget must be None or >= 1, got {prefill_budget}.")
        self.prefill_budget = prefill_budget
        """Most prompt tokens one wave prefills in its first forward pass, counted as
        rows x the longest prompt (rows are left-padded to it); the first row of a wave
        always fits. On a CPU a prefill is compute-bound: four 8,000-token prompts in
        one pass took 1.18x as long as four passes of one (and twice the memory), and
        every row of the wave waited for all four. Rows past it start their own wave
        (at once where ``max_waves`` allows). None: no cap."""
        if queue_timeout is not None and not queue_timeout > 0:
            raise ValueError(f"queue_timeout must be None or > 0 seconds, got {queue_timeout}.")
        self.queue_timeout = queue_timeout
        """Seconds a request may wait for its wave to start; past it, it is withdrawn
        with ``QueueTimeoutError`` (nothing decoded, safe to retry). None: it waits as
        long as it takes. A row only ever waits behind the token budget or the batch
        cap, so this turns "queued behind long prompts" into a prompt refusal."""
        if stats_window < 1:
            raise ValueError(f"stats_window must be >= 1, got {stats_window}.")
        self._wave_sizes: deque[int] = deque(maxlen=stats_window)
        self._wave_stats: deque[WaveStats] = deque(maxlen=stats_window)
        self._evicted_passes = 0
        self.threads = WaveThreads(single_row_threads)
        """The decoding thread's intra-op threads for a row alone (None: torch's setting;
        :class:`~langchain_pad.PADRuntime` picks per dtype, see
        :mod:`langchain_pad.engine.threads`)."""
        self.totals = SchedulerTotals()
        """Counters over the scheduler's whole life (the per-wave lists keep a window)."""
        self._pending: list[RequestTicket] = []
        self._running: list[RequestTicket] = []
        self._expected = 0
        self._gather_deadline = 0.0
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._reaper: threading.Thread | None = None

    # ------------------------------------------------------------------ statistics

    @property
    def wave_sizes(self) -> list[int]:
        """Rows per wave, for the last ``stats_window`` waves (oldest first)."""
        return list(self._wave_sizes)

    @property
    def wave_stats(self) -> list[WaveStats]:
        """Counters of the last ``stats_window`` waves (oldest first)."""
        return list(self._wave_stats)

    @property
    def forward_passes(self) -> int:
        """Forward passes since the scheduler started (waves past the window included)."""
        return self._evicted_passes + sum(s.forward_passes for s in list(self._wave_stats))

    def _record_wave(self, size: int, stats: WaveStats) -> None:
        if len(self._wave_stats) == self._wave_stats.maxlen:
            self._evicted_passes += self._wave_stats[0].forward_passes
        self._wave_sizes.append(size)
        self._wave_stats.append(stats)
        self.totals.waves += 1
        self.totals.rows += size

    # ------------------------------------------------------------------ submitting

    def submit(self, request: GenerationRequest, sink: EventSink) -> RequestTicket:
        """Queue a request; its events go to ``sink`` from the decoding thread."""
        ticket = RequestTicket(request, sink)
        with self._cond:
            if self._expected > 0:
                self._expected -= 1  # a refused request must not hold a gathered wave
            if self._closed:
                raise EngineClosedError("The decoding scheduler has been closed.")
            self.engine.check_prompt(len(request.prompt_ids))
            self._pending.append(ticket)
            self._ensure_thread()
            self._ensure_reaper()
            self._cond.notify_all()
        return ticket

    def stream(
        self, request: GenerationRequest, *, timeout: float | None = None
    ) -> Iterator[TokenEvent]:
        """Submit and iterate the events; closing the iterator cancels the request."""
        sink = _QueueSink()
        ticket = self.submit(request, sink)
        return sink.iterate(ticket, timeout)

    @contextlib.contextmanager
    def gathering(self, count: int) -> Iterator[None]:
        """Hold the next wave until ``count`` more requests arrive (or the timeout passes)."""
        with self._cond:
            self._expected += count
            self._gather_deadline = time.monotonic() + self.gather_timeout
        try:
            yield
        finally:
            with self._cond:
                self._expected = max(0, self._expected - count)
                self._cond.notify_all()

    def close(self, timeout: float | None = 10.0, *, cancel_running: bool = False) -> None:
        """Stop accepting requests, finish (or cancel) the queued ones, join the thread.

        Joining matters at interpreter exit: a daemon thread killed inside a torch
        kernel aborts the process ("terminate called without an active exception").
        """
        with self._cond:
            self._closed = True
            if cancel_running:
                for ticket in [*self._pending, *self._running]:
                    ticket.cancel()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # ------------------------------------------------------------------ the thread

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._serve, name="langchain-pad-decoder", daemon=True
            )
            self._thread.start()

    def _ensure_reaper(self) -> None:
        """The thread that withdraws requests past ``queue_timeout`` (under ``_cond``).

        Apart from the decoding thread, which may sit in one long forward pass (a
        prefill of 8,000 tokens takes a minute on two cores), so a refusal comes on time.
        """
        if self.queue_timeout is None:
            return
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(
                target=self._reap, name="langchain-pad-queue-reaper", daemon=True
            )
            self._reaper.start()

    def _reap(self) -> None:
        while True:
            with self._cond:
                if self._closed and not self._pending:
                    return
                limit = self.queue_timeout
                if limit is None:
                    return
                now = time.monotonic()
                expired = [t for t in self._pending if now - t.submitted >= limit]
                gone = {id(t) for t in expired}
                kept = [t for t in self._pending if id(t) not in gone]
                ahead = [*self._running, *kept]
                ahead_tokens = sum(ticket_tokens(t) for t in ahead)
                if expired:
                    self._pending = kept
                    self._cond.notify_all()
                else:
                    waiting = [t.submitted + limit - now for t in self._pending]
                    self._cond.wait(timeout=min(waiting) if waiting else None)
            for ticket in expired:
                ticket.deliver(QueueTimeoutError(limit, len(ahead), ahead_tokens))

    def _next_wave(self) -> list[RequestTicket] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed and not self._pending:
                return None
            while self._expected > 0 and time.monotonic() < self._gather_deadline:
                self._cond.wait(timeout=max(0.0, self._gather_deadline - time.monotonic()))
            self._wait_for_window()
            waiting = [t for t in self._pending if not t.cancelled]
            wave = self._within_budget(waiting[: self.max_batch_size], used=0)
            taken = {id(t) for t in wave}
            dropped = [t for t in self._pending if t.cancelled]
            self._pending = [t for t in self._pending if id(t) not in taken and not t.cancelled]
        for ticket in dropped:
            ticket.deliver(None)
        return wave

    def _within_budget(
        self, candidates: list[RequestTicket], *, used: int, alone_ok: bool = True
    ) -> list[RequestTicket]:
        """The first candidates whose tokens fit the budgets with ``used`` already taken.

        The queue order is kept (no row overtakes an earlier one that does not fit), and
        a wave of its own always takes its first row, however large, so nothing starves.
        """
        if self.token_budget is None and self.prefill_budget is None:
            return candidates
        taken: list[RequestTicket] = []
        widest = 0
        for ticket in candidates:
            cost = ticket_tokens(ticket)
            over = self.token_budget is not None and used + cost > self.token_budget
            if over and (taken or not alone_ok or used):
                break
            width = max(widest, len(ticket.request.prompt_ids))
            cap = self.prefill_budget
            if cap is not None and taken and (len(taken) + 1) * width > cap:
                break
            taken.append(ticket)
            used += cost
            widest = width
        return taken

    def _wait_for_window(self) -> None:
        """Hold the wave open ``batch_window`` s after its first request, unless it is full."""
        if self.batch_window <= 0 or not self._pending:
            return
        deadline = min(t.submitted for t in self._pending) + self.batch_window
        while (
            not self._closed
            and len(self._pending) < self.max_batch_size
            and time.monotonic() < deadline
        ):
            self._cond.wait(timeout=max(0.0, deadline - time.monotonic()))

    def _serve(self) -> None:
        while True:
            if self.max_waves > 1:  # may be raised after the thread started
                self._serve_interleaved()
                return
            wave = self._next_wave()
            if wave is None:
                return
            if not wave:
                continue
            with self._cond:
                self._running = wave
            try:
                self._run_wave(wave)
            finally:
                with self._cond:
                    self._running = []

    def _run_wave(self, wave: list[RequestTicket]) -> None:
        self.threads.set_rows(len(wave))
        finished: set[int] = set()
        stats = WaveStats()
        self._record_wave(len(wave), stats)  # before any caller can see its last event

        def fail_row(row: int, error: Exception) -> None:
            wave[row].deliver(error)
            finished.add(row)

        try:
            events = self.engine.stream(
                [t.request for t in wave],
                guide=self.guide,
                cancelled=lambda row: wave[row].cancelled,
                stats=stats,
                on_error=fail_row,
            )
            for event in events:
                wave[event.row].deliver(event)
                if event.finish_reason is not None:
                    finished.add(event.row)
        except BaseException as exc:  # hand the failure to every caller still waiting
            for row, ticket in enumerate(wave):
                if row not in finished:
                    ticket.deliver(exc)
                    finished.add(row)
            if not isinstance(exc, Exception):
                raise
        for row, ticket in enumerate(wave):
            if row not in finished:
                ticket.deliver(None)  # cancelled rows: end their streams

    # ------------------------------------------------------------------ several waves

    def _serve_interleaved(self) -> None:
        """Up to ``max_waves`` waves at once, one decoding step of each in turn."""
        import torch

        active: list[ActiveWave] = []
        # One inference mode around all waves: each wave's generator enters and leaves
        # its own, interleaved with the others', which must never switch it off.
        with torch.inference_mode():
            while True:
                wave = self._next_wave() if not active else self._ready_wave(active)
                if wave is None and not active:
                    return
                if wave:
                    active.append(self._start_wave(wave))
                    self._set_running(active)
                self.threads.set_rows(sum(len(w.tickets) for w in active))
                for current in list(active):
                    if not current.step():
                        active.remove(current)
                        self._set_running(active)

    def _set_running(self, active: list[ActiveWave]) -> None:
        with self._cond:
            self._running = [t for wave in active for t in wave.tickets]

    def _ready_wave(self, active: list[ActiveWave]) -> list[RequestTicket] | None:
        """A new wave if requests wait and may start now (never blocks)."""
        with self._cond:
            if len(active) >= self.max_waves or not self._pending:
                return None
            now = time.monotonic()
            if self._expected > 0 and now < self._gather_deadline:
                return None
            room = self.max_batch_size - sum(len(w.tickets) for w in active)
            waiting = [t for t in self._pending if not t.cancelled]
            if room <= 0 or not waiting:
                return None
            window_open = now < min(t.submitted for t in waiting) + self.batch_window
            if self.batch_window > 0 and window_open and len(waiting) < room:
                return None
            used = sum(ticket_tokens(t) for w in active for t in w.tickets)
            wave = self._within_budget(waiting[:room], used=used, alone_ok=False)
            if not wave:
                return None
            taken = {id(t) for t in wave}
            dropped = [t for t in self._pending if t.cancelled]
            self._pending = [t for t in self._pending if id(t) not in taken and not t.cancelled]
        for ticket in dropped:
            ticket.deliver(None)
        return wave

    def _start_wave(self, wave: list[RequestTicket]) -> ActiveWave:
        stats = WaveStats()
        self._record_wave(len(wave), stats)  # before any caller can see its last event
        finished: set[int] = set()

        def fail_row(row: int, error: Exception) -> None:
            wave[row].deliver(error)
            finished.add(row)

        events = self.engine.stream(
            [t.request for t in wave],
            guide=self.guide,
            cancelled=lambda row: wave[row].cancelled,
            stats=stats,
            on_error=fail_row,
        )
        return ActiveWave(wave, events, stats, finished)
