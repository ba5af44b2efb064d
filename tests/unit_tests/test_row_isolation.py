"""One bad row never fails its wave: the other rows decode as if it had never been there."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest
import torch

from langchain_pad.engine import BatchScheduler, GenerationRequest, SamplingParams
from langchain_pad.engine.loop import RowFailedError
from langchain_pad.engine.pad import MAX_BETA, PADGuidance

PROMPTS = [f"innocent prompt number {i}" for i in range(6)]


def request(text: str, guidance: Any = None, **params: Any) -> GenerationRequest:
    params.setdefault("max_new_tokens", 12)
    return GenerationRequest(tuple(text.encode()), SamplingParams(**params), guidance)


class PoisonGuide:
    """Leaves every row alone except those whose payload is "poison": their scores go NaN."""

    needs_hidden_states = False
    default_candidates = 8

    def start(self, payloads: Sequence[Any]) -> _PoisonSession:
        return _PoisonSession([p == "poison" for p in payloads])


class _PoisonSession:
    def __init__(self, poisoned: list[bool]) -> None:
        self.poisoned = torch.tensor(poisoned)

    def observe(self, forward: Any) -> None:
        pass

    def score(self, step: Any) -> torch.Tensor:
        scores = step.scores.clone()
        scores[self.poisoned] = float("nan")
        return scores

    def records(self, chosen: torch.Tensor) -> list[None]:
        return [None] * len(chosen)

    def select_rows(self, keep: torch.Tensor) -> None:
        self.poisoned = self.poisoned[keep]


def decode(scheduler: BatchScheduler, requests: list[GenerationRequest]) -> list[Any]:
    """Submit all requests in one gathered wave; per request its token ids or its error."""
    results: list[Any] = [None] * len(requests)

    def worker(i: int) -> None:
        try:
            results[i] = [e.token_id for e in scheduler.stream(requests[i])]
        except Exception as exc:
            results[i] = exc

    with scheduler.gathering(len(requests)):
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(requests))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    return results


@pytest.fixture
def scheduler(tiny_engine):
    sched = BatchScheduler(tiny_engine, guide=PoisonGuide(), gather_timeout=10.0)
    yield sched
    sched.close()


@pytest.mark.parametrize("sampled", [False, True])
def test_a_poisoned_row_fails_alone_and_the_others_are_unchanged(scheduler, sampled):
    params = {"temperature": 0.8, "seed": 7} if sampled else {}
    innocent = [request(p, "ok", **params) for p in PROMPTS]
    clean = decode(scheduler, innocent)
    mixed = decode(scheduler, [*innocent[:3], request("bad", "poison", **params), *innocent[3:]])
    assert scheduler.wave_sizes[-2:] == [6, 7]  # each set was one wave
    bad = mixed.pop(3)
    assert isinstance(bad, RowFailedError) and "not finite" in str(bad)
    assert mixed == clean


def test_a_row_whose_sampler_breaks_fails_alone(scheduler, monkeypatch, tiny_engine):
    innocent = [request(p, temperature=0.5, seed=i) for i, p in enumerate(PROMPTS)]
    clean = decode(scheduler, innocent)
    original = tiny_engine._pick

    def pick(row, scores):
        if row.request.prompt_ids == tuple(b"breaks"):
            raise RuntimeError("the sampler fell over")
        return original(row, scores)

    monkeypatch.setattr(tiny_engine, "_pick", pick)
    mixed = decode(scheduler, [request("breaks", temperature=0.5, seed=1), *innocent])
    assert isinstance(mixed[0], RowFailedError) and "sampler fell over" in str(mixed[0])
    assert mixed[1:] == clean


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"seed": 2**64}, "seed must be None or an integer"),
        ({"seed": "7"}, "seed must be None or an integer"),
        ({"seed": True}, "seed must be None or an integer"),
        ({"temperature": "hot"}, "temperature must be a finite number"),
        ({"temperature": float("nan")}, "temperature must be a finite number"),
        ({"top_p": float("nan")}, "top_p must be a number in"),
        ({"max_new_tokens": 2.5}, "max_new_tokens must be an integer"),
        ({"stop": "fundamental"}, "stop must be a tuple of strings"),
    ],
)
def test_bad_sampling_values_are_refused_where_the_request_is_built(params, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams(**params)


@pytest.mark.parametrize("beta", [1e308, float("inf"), float("nan"), 0.0, -1.0, MAX_BETA * 2])
def test_a_beta_the_engine_cannot_carry_is_refused(beta):
    with pytest.raises(ValueError, match=r"beta must be a number in \(0, 10000\]"):
        PADGuidance((1.0,), beta)
