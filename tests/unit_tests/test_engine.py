"""The token loop on a tiny random Llama: batching, finishing, stops, guides, cancellation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch

from langchain_pad.engine import (
    DecodingStep,
    ForwardOutput,
    GenerationRequest,
    PromptTooLongError,
    SamplingParams,
)

from .conftest import EOS_ID


def request(text: str, **params: Any) -> GenerationRequest:
    return GenerationRequest(tuple(text.encode()), SamplingParams(**params))


class ScriptGuide:
    """Forces each guided row to emit its payload (a list of token ids), step by step."""

    needs_hidden_states = True
    default_candidates = 258

    def __init__(self) -> None:
        self.sessions: list[ScriptSession] = []

    def start(self, payloads: Sequence[Any]) -> ScriptSession:
        session = ScriptSession(list(payloads))
        self.sessions.append(session)
        return session


class ScriptSession:
    def __init__(self, payloads: list[Any]) -> None:
        self.payloads = payloads
        self.steps = [0] * len(payloads)
        self.observed: list[ForwardOutput] = []
        self.kept: list[list[int]] = []

    def observe(self, forward: ForwardOutput) -> None:
        self.observed.append(forward)

    def score(self, step: DecodingStep) -> torch.Tensor:
        scores = step.scores.clone()
        for row, script in enumerate(self.payloads):
            if script is None:
                continue
            target = script[min(self.steps[row], len(script) - 1)]
            scores[row] += torch.where(step.candidate_ids[row] == target, 1e4, 0.0)
            self.steps[row] += 1
        return scores

    def records(self, chosen: torch.Tensor) -> list[dict[str, Any] | None]:
        pairs = zip(self.steps, self.payloads, strict=True)
        return [{"step": s} if p is not None else None for s, p in pairs]

    def select_rows(self, keep: torch.Tensor) -> None:
        index = keep.tolist()
        self.kept.append(index)
        self.payloads = [self.payloads[i] for i in index]
        self.steps = [self.steps[i] for i in index]


def test_batch_equals_each_row_alone(tiny_engine):
    prompts = ["hi", "a longer prompt here", "mid size", "x"]
    batched = tiny_engine.generate([request(p, max_new_tokens=24) for p in prompts])
    for prompt, out in zip(prompts, batched, strict=True):
        alone = tiny_engine.generate([request(prompt, max_new_tokens=24)])[0]
        assert out.token_ids == alone.token_ids
        assert out.text == alone.text


def test_greedy_matches_transformers_generate(tiny_engine, tiny_model):
    prompt = "compare me"
    ours = tiny_engine.generate([request(prompt, max_new_tokens=16)])[0]
    ids = torch.tensor([list(prompt.encode())])
    reference = tiny_model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False
    )[0, ids.shape[1] :].tolist()
    if EOS_ID in reference:
        reference = reference[: reference.index(EOS_ID) + 1]
    assert ours.token_ids == reference


def test_length_finish_gives_exactly_the_budget(tiny_engine):
    guide = ScriptGuide()
    out = tiny_engine.generate([GenerationRequest((1, 2), SamplingParams(7), [65])], guide)[0]
    assert out.finish_reason == "length"
    assert out.token_ids == [65] * 7
    assert out.text == "A" * 7


def test_eos_ends_a_row_and_others_continue(tiny_engine):
    guide = ScriptGuide()
    short = GenerationRequest((1,), SamplingParams(10), [66, 66, EOS_ID])
    long = GenerationRequest((1, 2, 3), SamplingParams(10), [67])
    outs = tiny_engine.generate([short, long], guide)
    assert outs[0].token_ids == [66, 66, EOS_ID]
    assert outs[0].text == "BB"
    assert outs[0].finish_reason == "stop"
    assert outs[1].token_ids == [67] * 10
    assert tiny_engine.last_stats.batch_sizes == [2, 2, 2] + [1] * 7
    assert guide.sessions[0].kept == [[1]]


def test_stop_sequence_spanning_tokens_is_not_returned(tiny_engine):
    guide = ScriptGuide()
    script = list(b"abcSTOPdef")
    req = GenerationRequest((1,), SamplingParams(20, stop=("STOP",)), script)
    events = list(tiny_engine.stream([req], guide=guide))
    assert "".join(e.text for e in events) == "abc"
    assert len(events) == len("abcSTOP")
    assert events[-1].finish_reason == "stop"
    # the held-back "S", "T", "O" released nothing until the stop was decided
    assert [e.text for e in events[3:]] == ["", "", "", ""]


def test_token_text_attributes_text_to_the_token_that_wrote_it(tiny_engine):
    guide = ScriptGuide()
    req = GenerationRequest((1,), SamplingParams(20, stop=("STOP",)), list(b"abSTOP"))
    events = list(tiny_engine.stream([req], guide=guide))
    # held-back text is still the work of its own token, stop text included
    assert [e.token_text for e in events] == list("abSTOP")
    assert "".join(e.text for e in events) == "ab"


def test_token_text_of_eos_and_of_the_last_token_of_the_budget(tiny_engine):
    guide = ScriptGuide()
    eos = GenerationRequest((1,), SamplingParams(10), [66, EOS_ID])
    events = list(tiny_engine.stream([eos], guide=guide))
    assert [e.token_text for e in events] == ["B", ""]
    cut = "é".encode()[:1]  # the budget ends in the middle of a character
    out = list(
        tiny_engine.stream([GenerationRequest((1,), SamplingParams(2), [66, cut[0]])], guide=guide)
    )
    assert "".join(e.token_text for e in out) == "".join(e.text for e in out) == "B\ufffd"


def test_held_back_prefix_is_released_at_the_end(tiny_engine):
    guide = ScriptGuide()
    req = GenerationRequest((1,), SamplingParams(5, stop=("xyz!",)), list(b"abxyz"))
    out = tiny_engine.generate([req], guide)[0]
    assert out.text == "abxyz"
    assert out.finish_reason == "length"


def test_multibyte_text_in_stream(tiny_engine):
    guide = ScriptGuide()
    text = "é😀"
    req = GenerationRequest((1,), SamplingParams(len(text.encode())), list(text.encode()))
    events = list(tiny_engine.stream([req], guide=guide))
    assert [e.text for e in events] == ["", "é", "", "", "", "😀"]
    assert [e.token_text for e in events] == ["", "é", "", "", "", "😀"]


def test_guide_sees_prefill_then_steps_with_hidden_states(tiny_engine):
    guide = ScriptGuide()
    tiny_engine.generate([GenerationRequest((1, 2, 3), SamplingParams(3), [70])], guide)
    observed = guide.sessions[0].observed
    assert [f.is_prefill for f in observed] == [True, False, False]
    assert observed[0].hidden_states[-1].shape[:2] == (1, 3)
    assert observed[1].hidden_states[-1].shape[:2] == (1, 1)


def test_guide_records_reach_events_only_for_guided_rows(tiny_engine):
    guide = ScriptGuide()
    plain = request("plain", max_new_tokens=3)
    steered = GenerationRequest((1,), SamplingParams(3), [71])
    events = list(tiny_engine.stream([plain, steered], guide=guide))
    assert all(e.record is None for e in events if e.row == 0)
    assert [e.record for e in events if e.row == 1] == [{"step": 1}, {"step": 2}, {"step": 3}]


def test_unguided_rows_are_unchanged_by_a_guide_in_the_batch(tiny_engine):
    alone = tiny_engine.generate([request("plain", max_new_tokens=12)])[0]
    mixed = tiny_engine.generate(
        [request("plain", max_new_tokens=12), GenerationRequest((1,), SamplingParams(12), [72])],
        ScriptGuide(),
    )[0]
    assert mixed.token_ids == alone.token_ids


def test_seeded_sampling_is_reproducible_and_seed_dependent(tiny_engine):
    def sample(seed: int) -> list[int]:
        req = request("sample", max_new_tokens=20, temperature=1.0, top_p=0.95, seed=seed)
        return tiny_engine.generate([req])[0].token_ids

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_top_k_one_is_greedy(tiny_engine):
    greedy = tiny_engine.generate([request("k", max_new_tokens=10)])[0]
    top1 = tiny_engine.generate([request("k", max_new_tokens=10, temperature=1.5, top_k=1)])[0]
    assert top1.token_ids == greedy.token_ids


def test_repetition_penalty_changes_scores_not_reported_logprobs(tiny_engine):
    plain = tiny_engine.generate([request("rep", max_new_tokens=20)])[0]
    penalized = tiny_engine.generate([request("rep", max_new_tokens=20, repetition_penalty=50.0)])[
        0
    ]
    assert penalized.token_ids != plain.token_ids
    assert plain.logprobs[0] == pytest.approx(penalized.logprobs[0])


def test_cancelled_row_leaves_the_batch(tiny_engine):
    steps = {"n": 0}

    def cancelled(row: int) -> bool:
        return row == 0 and steps["n"] >= 3

    events = []
    for event in tiny_engine.stream(
        [request("one", max_new_tokens=10), request("two", max_new_tokens=10)], cancelled=cancelled
    ):
        events.append(event)
        if event.row == 1:
            steps["n"] += 1
    assert sum(1 for e in events if e.row == 0) == 3
    assert sum(1 for e in events if e.row == 1) == 10


def test_prompt_longer_than_context_is_a_clear_error(tiny_engine):
    with pytest.raises(PromptTooLongError, match="context holds 128 tokens"):
        tiny_engine.generate([GenerationRequest(tuple(range(1, 129)))])


def test_budget_is_capped_by_context(tiny_engine):
    req = GenerationRequest(tuple([1] * 120), SamplingParams(50), [65])
    out = tiny_engine.generate([req], ScriptGuide())[0]
    assert len(out.token_ids) == 8
    assert out.finish_reason == "length"


def test_all_greedy_batch_picks_as_rows_in_a_mixed_batch(tiny_engine):
    # an all-greedy batch takes one vectorized argmax; a batch with a sampled row picks
    # row by row: the greedy rows must come out the same either way
    prompts = ["hi", "a longer prompt here", "mid size"]
    greedy = tiny_engine.generate([request(p, max_new_tokens=20) for p in prompts])
    sampled = request("x", max_new_tokens=20, temperature=0.9, seed=3)
    mixed = tiny_engine.generate([request(p, max_new_tokens=20) for p in prompts] + [sampled])
    assert [o.token_ids for o in greedy] == [o.token_ids for o in mixed[:3]]
    for alone, inside in zip(greedy, mixed[:3], strict=True):  # padding differs: rounding
        assert inside.logprobs == pytest.approx(alone.logprobs, abs=1e-4)


def test_repetition_penalty_is_transformers_over_the_history_without_whitespace(
    tiny_engine, tiny_model
):
    """The engine's batched penalty equals transformers' processor applied to the prompt
    and answer so far, with whitespace-only tokens left out, in a batch and alone."""
    from transformers import RepetitionPenaltyLogitsProcessor

    whitespace = {9, 10, 11, 12, 13, 28, 29, 30, 31, 32}  # str.isspace() bytes
    prompt = tuple(b"a b\nc  d \n\n e")
    out = tiny_engine.generate(
        [GenerationRequest(prompt, SamplingParams(12, repetition_penalty=1.8))]
    )[0]
    ids = list(prompt)
    processor = RepetitionPenaltyLogitsProcessor(1.8)
    with torch.no_grad():
        for _ in range(len(out.token_ids)):
            logits = tiny_model(input_ids=torch.tensor([ids])).logits[:, -1].float()
            history = torch.tensor([[t for t in ids if t not in whitespace]])
            ids.append(int(processor(history, logits).argmax()))
    assert out.token_ids == ids[len(prompt) :]
    batched = tiny_engine.generate(
        [
            GenerationRequest(prompt, SamplingParams(12, repetition_penalty=1.8)),
            GenerationRequest(tuple(b"other"), SamplingParams(12)),
        ]
    )
    assert batched[0].token_ids == out.token_ids
