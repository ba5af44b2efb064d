"""The default path on the real model and the shipped PersRM (no reward-model directory).

One runtime per model: plain and personalized calls share its decoding thread and its
waves; free text works with no store; greedy answers are those of the code before the
runtime existed (tests/integration_tests/data/greedy_reference.json, written by the
previous engine for the same prompts and weights).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from langchain_pad import PADChatModel
from langchain_pad.models import default_reward_model_path
from langchain_pad.runtime import PADRuntime

pytestmark = pytest.mark.slow

REFERENCE = Path(__file__).parent / "data" / "greedy_reference.json"
ELI5 = "explain it like I'm five"


def decoder_threads() -> int:
    return sum(t.name == "langchain-pad-decoder" and t.is_alive() for t in threading.enumerate())


@pytest.fixture(scope="module")
def runtime():
    """A runtime of its own, so wave counts are not mixed with other tests' calls."""
    runtime = PADRuntime(batch_window=0.0)
    yield runtime
    runtime.close()


def test_plain_and_personalized_calls_use_one_runtime_and_one_thread():
    llm = PADChatModel(max_tokens=4)
    threads_before = decoder_threads()
    started_before = llm.get_runtime().stats()["decoding_threads"]
    llm.invoke("Hi!")
    llm.invoke("Hi!", weights={"expertise": 1.0})
    llm.bind(weights={"informativeness": -1.0}).invoke("Hi!")
    runtime = llm.get_runtime()
    assert runtime is PADRuntime.shared()
    assert [r for r in PADRuntime.shared_runtimes() if r.model == runtime.model] == [runtime]
    stats = runtime.stats()
    # one thread, serving the shipped PersRM among whatever other tests loaded into it
    assert stats["decoding_threads"] == 1
    assert str(default_reward_model_path().resolve()) in stats["reward_models"]
    assert decoder_threads() - threads_before == 1 - started_before


def test_a_personalized_batch_is_one_wave(runtime):
    llm = PADChatModel(runtime=runtime, max_tokens=6)
    prompts = [f"Explain topic number {i}." for i in range(8)]
    answers = llm.batch(prompts, weights={"expertise": -1.0})  # the pole: raw -6
    assert runtime.scheduler.wave_sizes[-1] == 8
    assert all(a.response_metadata["pad_weights"]["expertise"] == -6.0 for a in answers)


def test_four_plain_and_four_personalized_callers_share_waves(runtime):
    llm = PADChatModel(runtime=runtime, max_tokens=8)
    results: dict[int, object] = {}

    def call(i: int) -> None:
        kwargs = {"weights": {"expertise": 1.0 if i % 2 else -1.0}} if i >= 4 else {}
        results[i] = llm.invoke(f"What is a number {i}?", **kwargs)

    waves_before = runtime.stats()["totals"]["waves"]
    threads_before = decoder_threads()
    with runtime.gathering(8):  # independent callers; the wave waits for all eight
        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    stats = runtime.stats()
    assert stats["totals"]["waves"] - waves_before == 1 and stats["wave_sizes"][-1] == 8
    assert decoder_threads() == threads_before  # no second decoding thread appeared
    guided = [i for i, m in results.items() if "pad_weights" in m.response_metadata]  # type: ignore[attr-defined]
    assert sorted(guided) == [4, 5, 6, 7]


def test_free_text_needs_no_store():
    llm = PADChatModel(max_tokens=4)
    answer = llm.invoke("What is the sun?", preference=ELI5)
    info = answer.response_metadata["pad_profile"]
    assert info["source"] == "preference"
    assert info["used"][0] == "anchor:expertise:elementary"
    assert answer.response_metadata["pad_weights"]["expertise"] < 0


def test_a_store_at_an_explicit_path_matches_free_text(tmp_path):
    from langchain_pad.profiles import SQLiteProfileStore

    with SQLiteProfileStore(tmp_path / "profiles.sqlite3") as store:
        assert store.match(ELI5).used[0] == "anchor:expertise:elementary"
        llm = PADChatModel(max_tokens=4, profile_store=store)
        info = llm.invoke("What is the sun?", preference=ELI5).response_metadata["pad_profile"]
        assert info["used"][0] == "anchor:expertise:elementary"


def test_greedy_answers_are_unchanged_by_the_runtime(runtime):
    reference = json.loads(REFERENCE.read_text())
    # the reference predates pole units and the guard: raw weights, no guard
    llm = PADChatModel(
        runtime=runtime,
        max_tokens=reference["max_tokens"],
        repetition_penalty=1.0,
        plausibility=0.0,
    )
    by_weights: dict[str, list[dict]] = {}
    for answer in reference["answers"]:
        by_weights.setdefault(json.dumps(answer["weights"]), []).append(answer)
    for key, answers in by_weights.items():
        weights = json.loads(key)
        kwargs = {} if weights is None else {"raw_weights": weights}
        got = llm.batch([a["prompt"] for a in answers], **kwargs)
        for expected, message in zip(answers, got, strict=True):
            assert message.response_metadata["token_ids"] == expected["token_ids"], (
                weights,
                expected["prompt"],
            )


def test_one_bad_request_among_fifteen_innocent_ones_hurts_none(runtime):
    """Issue 17's case: values that used to pass the boundary and break the wave."""
    llm = PADChatModel(runtime=runtime, max_tokens=12)
    prompts = [f"Name a fact about the number {i}." for i in range(15)]
    weights = {"expertise": 1.0}
    alone = [m.response_metadata["token_ids"] for m in llm.batch(prompts, weights=weights)]
    results: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            if i == 15:
                results[i] = llm.invoke("Hi", weights={"expertise": 1.0}, beta=1e308)
            else:
                results[i] = llm.invoke(prompts[i], weights=weights)
        except Exception as exc:
            results[i] = exc

    with runtime.gathering(15):  # the innocent ones share one wave; the bad one is refused
        threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    bad = results.pop(15)
    assert isinstance(bad, ValueError) and "beta must be a number" in str(bad)
    got = [results[i].response_metadata["token_ids"] for i in range(15)]  # type: ignore[attr-defined]
    assert got == alone
