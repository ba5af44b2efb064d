"""Fast-forwarding forced tokens in the loop, on a tiny random Llama with scripted grammars.

The grammar here is a stand-in (the real llguidance grammar is exercised with the real
model in ``tests/integration_tests/test_fast_forward_real.py``): a template of slots,
each either a forced token or free (any byte). It implements what the loop reads of a
grammar, so these tests check the loop's logic: the same tokens with and without
fast-forwarding, fewer forwards, forced rows left out of the decision step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch

from langchain_pad.engine import GenerationRequest, SamplingParams
from langchain_pad.engine.pad import PADGuidance, PADGuide, PADSession

from .conftest import EOS_ID
from .test_reward_model import perturbed

VOCAB = 258
FREE = -1


class TemplateGrammar:
    """Slots in order: a token id is forced there, FREE admits any byte (0-255)."""

    def __init__(self, slots: Sequence[int]) -> None:
        self.slots = list(slots)
        self.at = 0

    def allowed_mask(self) -> torch.Tensor:
        mask = torch.zeros(VOCAB, dtype=torch.bool)
        if self.at >= len(self.slots):
            mask[EOS_ID] = True
        elif self.slots[self.at] == FREE:
            mask[:256] = True
        else:
            mask[self.slots[self.at]] = True
        return mask

    def consume(self, token_id: int) -> None:
        if not self.allowed_mask()[token_id]:
            raise ValueError(f"token {token_id} is not allowed at slot {self.at}")
        self.at += 1

    def is_stopped(self) -> bool:
        return self.at >= len(self.slots)

    def forced_tokens(self) -> list[int]:
        run: list[int] = []
        for slot in self.slots[self.at :]:
            if slot == FREE:
                break
            run.append(slot)
        return run


def template(text: str) -> list[int]:
    """``"{_}"`` -> forced ``{``, a free slot, forced ``}``."""
    return [FREE if ch == "_" else ord(ch) for ch in text]


SHAPES = ['{"a": _, "b": _}', "__x__yz", '<call>{"name": "__"}</call>', "____"]


def requests(weights: Sequence[Any] = (None,), n: int = 40) -> list[GenerationRequest]:
    out = []
    for i, shape in enumerate(SHAPES):
        w = weights[i % len(weights)]
        out.append(
            GenerationRequest(
                tuple(f"prompt {i}: ".encode()),
                SamplingParams(n),
                PADGuidance(tuple(w)) if w is not None else None,
                TemplateGrammar(template(shape)) if i != 3 else None,
            )
        )
    return out


@pytest.fixture(scope="module")
def guide(tiny_model):
    return PADGuide(perturbed(tiny_model, scale=0.5))


def decode(engine, reqs, guide=None, fast_forward=True):
    engine.fast_forward = fast_forward
    try:
        outs = engine.generate(reqs, guide)
    finally:
        engine.fast_forward = True
    return outs, engine.last_stats


@pytest.mark.parametrize("weights", [(None,), ((2, -1, 0.5), None)], ids=["plain", "guided"])
def test_fast_forward_writes_the_same_tokens_alone_and_batched(tiny_engine, guide, weights):
    batched_ff, ff_stats = decode(tiny_engine, requests(weights), guide)
    batched, stats = decode(tiny_engine, requests(weights), guide, fast_forward=False)
    assert [o.token_ids for o in batched_ff] == [o.token_ids for o in batched]
    assert ff_stats.forced_tokens > 0 and stats.forced_tokens == 0
    for i in range(len(SHAPES)):
        alone_ff, alone_stats = decode(tiny_engine, [requests(weights)[i]], guide)
        alone, plain_stats = decode(tiny_engine, [requests(weights)[i]], guide, False)
        assert alone_ff[0].token_ids == alone[0].token_ids == batched[i].token_ids
        if alone_stats.forced_tokens:  # a forced run costs one forward, not one a token
            assert alone_stats.forward_passes < plain_stats.forward_passes
    slots = template(SHAPES[0])
    assert len(batched_ff[0].token_ids) == len(slots)
    assert all(t == s for t, s in zip(batched_ff[0].token_ids, slots, strict=True) if s != FREE)


def test_forced_tokens_skip_the_decision_and_say_so(tiny_engine, guide):
    reqs = requests(((1, 1, 1),))
    seen: list[list[int] | None] = []
    original = PADSession.score

    def score(self, step):
        seen.append(None if step.rows is None else step.rows.tolist())
        return original(self, step)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PADSession, "score", score)
        outs, stats = decode(tiny_engine, reqs, guide)
    assert any(rows is not None and len(rows) < 4 for rows in seen)
    forced = [[lp is None for lp in o.logprobs] for o in outs]
    assert sum(map(sum, forced)) == stats.forced_tokens
    assert not any(forced[3])  # the row without a grammar always decides
    for out, flags in zip(outs, forced, strict=True):
        # only decided tokens carry a PAD record; forced ones have no log-prob
        assert len(out.records) == flags.count(False)
        decided = [lp for lp, f in zip(out.logprobs, flags, strict=True) if not f]
        assert all(isinstance(lp, float) for lp in decided)


def test_a_forced_run_stops_at_the_token_budget(tiny_engine):
    req = GenerationRequest(
        tuple(b"budget: "), SamplingParams(3), None, TemplateGrammar(template("_abcdef"))
    )
    (out,), stats = decode(tiny_engine, [req])
    assert len(out.token_ids) == 3 and out.finish_reason == "length"
    assert out.text.endswith("ab")
    assert stats.forced_tokens == 2


def test_a_grammar_that_forces_everything_takes_no_decision(tiny_engine):
    req = GenerationRequest(
        tuple(b"all forced: "), SamplingParams(20), None, TemplateGrammar(template("yes"))
    )
    (out,), stats = decode(tiny_engine, [req])
    assert out.text == "yes" and out.finish_reason == "stop"
    assert stats.forward_passes == 1  # the prompt's; the grammar ends without another
    assert out.logprobs == [None, None, None]
