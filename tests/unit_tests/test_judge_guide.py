"""Judge-guided sampling: the judge's gain per candidate as the token reward."""

from __future__ import annotations

import math

import pytest
import torch

from langchain_pad.datagen.generate import GenerationSettings, _plan_settings
from langchain_pad.datagen.judge_guide import JudgeGuide, JudgeTarget
from langchain_pad.engine.guidance import DecodingStep

pytest.importorskip("vaderSentiment")

WORDS = ["the", "wonderful", "terrible", "day"]


class WordTokenizer:
    """One token per word; enough for the guide, which only decodes."""

    def decode(self, ids: list[int]) -> str:
        return " ".join(WORDS[i] for i in ids)


def step(candidates: list[list[int]], scores: list[list[float]], payloads: list[object]):
    ids = torch.tensor(candidates)
    s = torch.tensor(scores)
    return DecodingStep(candidate_ids=ids, base_logprobs=s, scores=s, payloads=payloads)


def test_each_candidate_is_rewarded_by_how_far_it_moves_the_judge_the_poles_way():
    warm = JudgeTarget("sentiment", +1, 2.0)
    cold = JudgeTarget("sentiment", -1, 2.0)
    session = JudgeGuide(WordTokenizer()).start([warm, cold, None])
    flat = [[0.0, -0.1, -0.2]] * 3
    scored = session.score(step([[0, 1, 2]] * 3, flat, [warm, cold, None]))

    assert int(scored[0].argmax()) == 1  # "wonderful" for the warm row
    assert int(scored[1].argmax()) == 2  # "terrible" for the cold row
    assert torch.equal(scored[2], torch.tensor(flat[2]))  # a plain row is left alone
    assert float(scored[0, 0]) == 0.0  # "the" moves no sentiment: no reward


def test_candidates_below_the_floor_are_left_out_but_the_best_never_is():
    target = JudgeTarget("sentiment", +1, 100.0, floor=0.5)
    session = JudgeGuide(WordTokenizer()).start([target])
    scored = session.score(step([[0, 1]], [[0.0, math.log(0.4)]], [target]))
    assert scored[0, 1] == float("-inf")  # "wonderful" is under half the best's probability
    assert scored[0, 0] == 0.0


def test_the_answer_so_far_follows_the_picks_and_the_rows_kept():
    a, b = JudgeTarget("sentiment", +1, 1.0), JudgeTarget("sentiment", -1, 1.0)
    session = JudgeGuide(WordTokenizer()).start([a, b])
    session.score(step([[1, 3], [2, 3]], [[0.0, -1.0]] * 2, [a, b]))
    session.records(torch.tensor([0, 1]))  # row 0 took "wonderful", row 1 "day"
    session.select_rows(torch.tensor([1]))  # row 0 finished
    session.score(step([[3, 0]], [[0.0, -1.0]], [b]))
    session.records(torch.tensor([0]))
    assert session._answers == [[3, 3]]


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"judge": "nope", "sign": 1, "strength": 1.0}, "unknown judge"),
        ({"judge": "sentiment", "sign": 0, "strength": 1.0}, "sign must be"),
        ({"judge": "sentiment", "sign": 1, "strength": 0.0}, "strength must be"),
        ({"judge": "sentiment", "sign": 1, "strength": 1.0, "floor": 0.0}, "floor must be"),
    ],
)
def test_bad_targets_are_clear_errors(kwargs, said):
    with pytest.raises(ValueError, match=said):
        JudgeTarget(**kwargs)


def test_settings_refuse_plain_prompts_without_guidance_and_keep_old_plans():
    with pytest.raises(ValueError, match="pole_prompts=False needs judge_guidance"):
        GenerationSettings(pole_prompts=False)
    with pytest.raises(ValueError, match="judge_guidance must be >= 0"):
        GenerationSettings(judge_guidance=-1.0)
    plan = _plan_settings(GenerationSettings())
    assert "judge_guidance" not in plan and "pole_prompts" not in plan  # old runs resume
    guided = _plan_settings(GenerationSettings(judge_guidance=5.0, pole_prompts=False))
    assert guided["judge_guidance"] == 5.0 and guided["pole_prompts"] is False
