"""The decoding thread: waves, gathering, cancellation, errors, shutdown."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from langchain_pad.engine import (
    BatchScheduler,
    EngineClosedError,
    GenerationRequest,
    SamplingParams,
)


def request(text: str, n: int = 8) -> GenerationRequest:
    return GenerationRequest(tuple(text.encode()), SamplingParams(max_new_tokens=n))


@pytest.fixture
def scheduler(tiny_engine):
    sched = BatchScheduler(tiny_engine, gather_timeout=5.0)
    yield sched
    sched.close()


def test_gathered_requests_from_threads_decode_as_one_wave(scheduler):
    results: dict[int, list[Any]] = {}

    def worker(i: int) -> None:
        results[i] = list(scheduler.stream(request(f"prompt {i}")))

    with scheduler.gathering(3):
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert scheduler.wave_sizes == [3]
    assert sorted(results) == [0, 1, 2]
    assert all(events[-1].finish_reason is not None for events in results.values())


def test_stream_results_equal_direct_engine_results(scheduler, tiny_engine):
    direct = tiny_engine.generate([request("same", 12)])[0]
    streamed = list(scheduler.stream(request("same", 12)))
    assert [e.token_id for e in streamed] == direct.token_ids


def test_closing_a_stream_early_cancels_its_row(scheduler):
    events = scheduler.stream(request("long", 60))
    first = next(events)
    events.close()
    assert first.token_id >= 0
    # the thread is free again and serves the next request in a new wave
    after = list(scheduler.stream(request("next", 4)))
    assert len(after) <= 4
    assert len(scheduler.wave_sizes) == 2


def test_errors_reach_every_caller_and_the_thread_survives(tiny_engine):
    class BrokenGuide:
        needs_hidden_states = False
        default_candidates = 4

        def start(self, payloads):
            raise RuntimeError("guide exploded")

    sched = BatchScheduler(tiny_engine, guide=BrokenGuide())
    try:
        with pytest.raises(RuntimeError, match="guide exploded"):
            list(sched.stream(GenerationRequest((1, 2), SamplingParams(4), guidance="x")))
        assert len(list(sched.stream(request("fine", 3)))) <= 3
    finally:
        sched.close()


def test_timeout_raises_a_clear_error(scheduler):
    with pytest.raises(TimeoutError, match="timeout"):
        list(scheduler.stream(request("slow", 100), timeout=1e-6))


def test_submit_after_close_is_refused(tiny_engine):
    sched = BatchScheduler(tiny_engine)
    sched.close()
    with pytest.raises(EngineClosedError):
        sched.stream(request("late"))


def test_bad_batch_size_is_refused(tiny_engine):
    with pytest.raises(ValueError, match="max_batch_size"):
        BatchScheduler(tiny_engine, max_batch_size=0)


def test_a_caller_that_went_away_does_not_stop_the_thread(scheduler):
    calls = []

    def gone(item):
        calls.append(item)
        raise RuntimeError("Event loop is closed")

    ticket = scheduler.submit(request("orphan", 50), gone)
    after = list(scheduler.stream(request("next", 3)))
    assert ticket.cancelled
    assert 1 <= len(after) <= 3
    # one failed delivery cancelled the row: no further 49 tokens were decoded for it
    assert 1 <= len(calls) <= 2


def test_a_refused_request_does_not_hold_a_gathered_wave(scheduler, tiny_engine):
    import time

    too_long = GenerationRequest(tuple(range(1, 200)))
    with scheduler.gathering(2):
        with pytest.raises(ValueError, match="context"):
            scheduler.submit(too_long, lambda item: None)
        started = time.monotonic()
        events = list(scheduler.stream(request("alone", 2)))
    assert events and time.monotonic() - started < 2.0


def test_batch_window_joins_independent_callers_into_one_wave(tiny_engine):
    sched = BatchScheduler(tiny_engine, batch_window=0.5)
    results: dict[int, list[Any]] = {}

    def worker(i: int) -> None:
        results[i] = list(sched.stream(request(f"prompt {i}")))

    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sched.wave_sizes == [4]
        assert all(events[-1].finish_reason is not None for events in results.values())
    finally:
        sched.close()


def test_a_full_wave_does_not_wait_for_the_window(tiny_engine):
    import time

    sched = BatchScheduler(tiny_engine, batch_window=30.0, max_batch_size=1)
    try:
        started = time.monotonic()
        assert list(sched.stream(request("alone", 3)))
        assert time.monotonic() - started < 10.0
    finally:
        sched.close()


def test_a_request_arriving_mid_wave_starts_its_own_wave_at_once(tiny_engine):
    sched = BatchScheduler(tiny_engine, max_waves=2)
    try:
        long_events = sched.stream(request("a long one", 60))
        first = next(long_events)  # the long wave is running
        short = list(sched.stream(request("short", 3)))  # does not wait for it to end
        rest = list(long_events)
        assert short[-1].finish_reason is not None
        assert [first, *rest][-1].finish_reason is not None
        assert len(rest) >= 20  # the long wave was still going when the short one ended
        assert sched.wave_sizes == [1, 1]
        direct = tiny_engine.generate([request("a long one", 60), request("short", 3)])
        assert [e.token_id for e in [first, *rest]] == direct[0].token_ids
        assert [e.token_id for e in short] == direct[1].token_ids
    finally:
        sched.close()


def test_interleaved_waves_from_many_threads_all_complete(tiny_engine):
    sched = BatchScheduler(tiny_engine, max_waves=3, max_batch_size=4)
    results: dict[int, list[Any]] = {}

    def worker(i: int) -> None:
        results[i] = list(sched.stream(request(f"prompt {i}", 6 + i)))

    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(results) == list(range(10))
        for i, events in results.items():
            expected = tiny_engine.generate([request(f"prompt {i}", 6 + i)])[0].token_ids
            assert [e.token_id for e in events] == expected
        assert sum(sched.wave_sizes) == 10
        assert max(max(s.batch_sizes) for s in sched.wave_stats) <= 4
    finally:
        sched.close()


def test_bad_max_waves_is_refused(tiny_engine):
    with pytest.raises(ValueError, match="max_waves"):
        BatchScheduler(tiny_engine, max_waves=0)


def _arrive_in_order(sched: BatchScheduler, requests: list[GenerationRequest]) -> dict[int, Any]:
    """Each request streamed on its own thread, submitted in list order, into one gathering."""
    results: dict[int, list[Any]] = {}

    def worker(i: int) -> None:
        results[i] = list(sched.stream(requests[i]))

    with sched.gathering(len(requests)):
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(requests))]
        for t in threads:
            t.start()
            t.join(0.05)  # arrive in order
        for t in threads:
            t.join(30)
    return results


def test_a_token_budget_splits_waves_in_order_and_runs_a_huge_row_alone(tiny_engine):
    sched = BatchScheduler(tiny_engine, gather_timeout=5.0, token_budget=60)
    try:
        texts = ["a" * 20, "b" * 20, "c" * 20, "d" * 90]
        results = _arrive_in_order(sched, [request(text, 8) for text in texts])
        # 28 tokens each: two fit in 60, the third waits; 98 > 60 runs alone
        assert sched.wave_sizes == [2, 1, 1]
        assert all(events[-1].finish_reason is not None for events in results.values())
    finally:
        sched.close()


class _SlowModel:
    """The tiny model, each forward pass slowed down: a wave that outlasts a timeout."""

    def __init__(self, model: Any, seconds: float) -> None:
        self._model = model
        self._seconds = seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import time

        time.sleep(self._seconds)
        return self._model(*args, **kwargs)


def test_a_request_queued_past_queue_timeout_is_refused_while_the_wave_runs(
    tiny_engine, monkeypatch
):
    from langchain_pad.engine import QueueTimeoutError

    monkeypatch.setattr(tiny_engine, "model", _SlowModel(tiny_engine.model, 0.05))
    sched = BatchScheduler(tiny_engine, token_budget=60, queue_timeout=0.3)
    try:
        running = sched.stream(request("a" * 20, 30))  # 50 tokens: the budget is full
        first = next(running)
        with pytest.raises(QueueTimeoutError) as refused:
            list(sched.stream(request("b" * 20, 30)))
        assert refused.value.queue_timeout == 0.3
        assert refused.value.ahead_rows == 1 and refused.value.ahead_tokens == 50
        assert "queue_timeout=0.3" in str(refused.value) and "retry later" in str(refused.value)
        assert isinstance(refused.value, TimeoutError)
        rest = list(running)  # refused while the wave still ran; the wave is unharmed
        assert rest and rest[-1].finish_reason is not None
        alone = tiny_engine.generate([request("a" * 20, 30)])[0].token_ids
        assert [e.token_id for e in [first, *rest]] == alone
        assert sched.wave_sizes == [1]  # the refused request never started a wave
        after = list(sched.stream(request("c" * 20, 4)))  # room again: served
        assert after[-1].finish_reason is not None
    finally:
        sched.close()


def test_queue_timeout_must_be_positive(tiny_engine):
    with pytest.raises(ValueError, match="queue_timeout"):
        BatchScheduler(tiny_engine, queue_timeout=0)


def test_a_prefill_budget_gives_long_prompts_their_own_waves(tiny_engine):
    # rows x longest prompt: 3 x 20 fits 64; a 40-token prompt beside another does not
    sched = BatchScheduler(tiny_engine, gather_timeout=5.0, prefill_budget=64)
    try:
        prompts = ["a" * 20, "b" * 20, "c" * 20, "d" * 40, "e" * 10]
        results = _arrive_in_order(sched, [request(text, 4) for text in prompts])
        # a, b, c: 3 x 20; a fourth row would pad to 4 x 40; d + e would pad to 2 x 40
        assert sched.wave_sizes == [3, 1, 1]
        assert all(events[-1].finish_reason is not None for events in results.values())
    finally:
        sched.close()


class _ThreadCountGuide:
    """Records the decoding thread's intra-op thread count at each wave's start."""

    needs_hidden_states = False
    default_candidates = 4

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def start(self, payloads):
        import torch

        self.seen.append((len(payloads), torch.get_num_threads()))

        class Session:
            def observe(self, forward):
                pass

            def score(self, step):
                return step.scores

            def records(self, chosen):
                return [None] * len(chosen)

            def select_rows(self, keep):
                pass

        return Session()


@pytest.mark.parametrize("single_row_threads", [1, None])
def test_a_row_alone_decodes_on_single_row_threads_and_a_batch_on_torchs(
    tiny_engine, single_row_threads
):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the suite runs on one; new threads start from this
    guide = _ThreadCountGuide()
    sched = BatchScheduler(
        tiny_engine, guide=guide, gather_timeout=5.0, single_row_threads=single_row_threads
    )
    guided = GenerationRequest((1, 2, 3), SamplingParams(max_new_tokens=3), guidance="x")
    try:
        list(sched.stream(guided))
        with sched.gathering(2):
            threads = [
                threading.Thread(target=lambda: list(sched.stream(guided))) for _ in range(2)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
        list(sched.stream(guided))
        alone = 1 if single_row_threads == 1 else 2
        assert guide.seen == [(1, alone), (2, 2), (1, alone)]
        assert torch.get_num_threads() == 2  # the caller's own count is left alone
    finally:
        sched.close()
        torch.set_num_threads(before)


def test_single_row_threads_must_be_a_positive_integer_or_none(tiny_engine):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="single_row_threads must be None"):
            BatchScheduler(tiny_engine, single_row_threads=bad)
