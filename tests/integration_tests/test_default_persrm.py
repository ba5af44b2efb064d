"""The shipped default PersRM: it loads by default, and its published figures hold."""

from __future__ import annotations

import json
import statistics

import pytest

from langchain_pad import PADChatModel
from langchain_pad.datagen import read_dataset
from langchain_pad.judges import reading_grade
from langchain_pad.models import default_reward_model_path
from langchain_pad.reward_model import PersonalizedRewardModel
from langchain_pad.training.pipeline import _tokenize, pair_accuracy

DATA = default_reward_model_path().parents[1] / "data" / "preferences" / "v1"


@pytest.fixture(scope="module")
def default_rm(loaded) -> PersonalizedRewardModel:
    return PersonalizedRewardModel.load(default_reward_model_path(), loaded.model)


@pytest.fixture(scope="module")
def metrics() -> dict:
    return json.loads((default_reward_model_path() / "metrics.json").read_text())


def test_shipped_axes_reach_the_bar_and_failed_ones_are_not_shipped(default_rm, metrics):
    shipped = [a for a in metrics["axes"] if a["shipped"]]
    assert default_rm.axes == [a["name"] for a in shipped] == metrics["shipped_axes"]
    assert all(a["heldout_accuracy"] >= 0.75 for a in shipped)
    assert all(not a["shipped"] for a in metrics["axes"] if a["heldout_accuracy"] < 0.75)


def test_held_out_accuracy_recomputes_from_the_committed_dataset(loaded, default_rm, metrics):
    if not DATA.is_dir():
        pytest.skip("the preference dataset is not in this checkout (installed package)")
    _, records = read_dataset(DATA)
    heldout = [r for r in records if r.split == "heldout" and r.axis in default_rm.axes]
    pairs = _tokenize(loaded, heldout, default_rm.axes)
    measured = pair_accuracy(default_rm, pairs)
    for index, axis in enumerate(default_rm.axes):
        wins, n = measured[index]
        published = next(a for a in metrics["axes"] if a["name"] == axis)
        assert n == published["heldout_pairs"]
        # the same file and data; allow one near-tie flip from float rounding elsewhere
        assert abs(wins / n - published["heldout_accuracy"]) <= 1 / n + 1e-9


def test_anchors_cover_every_pole_with_the_sign_of_the_pole(default_rm):
    anchors = json.loads((default_reward_model_path() / "anchors.json").read_text())
    assert anchors["axes"] == default_rm.axes
    by_name = {a["name"]: a for a in anchors["anchors"]}
    for axis in default_rm.axes:
        poles = [name for name in by_name if name.startswith(f"{axis}:")]
        assert len(poles) == 2
        signs = sorted(by_name[p]["weights"][axis] > 0 for p in poles)
        assert signs == [False, True]
        assert all(a["description"] for a in anchors["anchors"])


def test_padchatmodel_uses_the_shipped_reward_model_by_default(default_rm):
    llm = PADChatModel(max_tokens=8)
    message = llm.invoke("What is rain?", weights={default_rm.axes[0]: 1.0})
    assert message.response_metadata["pad_axes"] == default_rm.axes
    assert message.usage_metadata is not None
    rewards = message.response_metadata["pad"]["reward"]
    assert len(rewards) == message.usage_metadata["output_tokens"] > 0


@pytest.mark.skipif(
    "expertise"
    not in json.loads((default_reward_model_path() / "metrics.json").read_text())["shipped_axes"]
    if (default_reward_model_path() / "metrics.json").is_file()
    else True,
    reason="expertise is not a shipped axis",
)
def test_expertise_anchors_move_the_reading_grade_the_intended_way():
    anchors = json.loads((default_reward_model_path() / "anchors.json").read_text())
    weights = {a["name"]: a["weights"] for a in anchors["anchors"]}
    llm = PADChatModel(max_tokens=48)
    prompts = [
        "Explain how vaccines train the immune system.",
        "Why do metals conduct electricity?",
        "What is inflation?",
    ]
    expert = llm.batch(prompts, weights=weights["expertise:expert"])
    kid = llm.batch(prompts, weights=weights["expertise:elementary"])
    grade_expert = statistics.fmean(reading_grade(str(m.content)) for m in expert)
    grade_kid = statistics.fmean(reading_grade(str(m.content)) for m in kid)
    assert grade_expert > grade_kid
