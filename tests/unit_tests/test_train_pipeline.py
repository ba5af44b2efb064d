"""The `train` pipeline end to end on the tiny model: learnable axes ship, others do not."""

from __future__ import annotations

import json

import pytest
import torch

from langchain_pad.datagen.dataset import (
    PAIRS_FILE,
    AxisCounts,
    DatasetManifest,
    PairRecord,
    sha256_file,
    write_jsonl,
    write_manifest,
)
from langchain_pad.models import LoadedModel, resolve_reward_model
from langchain_pad.reward_model import PersonalizedRewardModel
from langchain_pad.training.pairs import PreferencePair, tokenize_pair
from langchain_pad.training.pipeline import (
    TrainSettings,
    pick_magnitude,
    recalibrate_anchors,
    train_reward_model,
)

from .conftest import EOS_ID


def _pairs(axis: str, split: str, n: int, *, signal: bool) -> list[PairRecord]:
    pairs = []
    for i in range(n):
        up = "AAAA AAAA AAAA" if not signal or i % 2 == 0 or split == "train" else "AAAA AAAA"
        down = "zzzz zzzz zzzz"
        # without signal, half the pairs say the opposite: no head can beat 50%
        chosen, rejected = (up, down) if signal or i % 2 == 0 else (down, up)
        pairs.append(
            PairRecord(
                id=f"{axis}-{split}-{i}",
                axis=axis,
                prompt_id=f"{split}{i}",
                split=split,  # type: ignore[arg-type]
                prompt=f"question {i}?",
                chosen=chosen,
                rejected=rejected,
                chosen_complete=True,
                rejected_complete=True,
                judge="reading_grade",
                chosen_score=1.0,
                rejected_score=0.0,
            )
        )
    return pairs


@pytest.fixture
def dataset(tmp_path):
    records = [
        *_pairs("expertise", "train", 12, signal=True),
        *_pairs("expertise", "heldout", 8, signal=True),
        *_pairs("style", "train", 12, signal=False),
        *_pairs("style", "heldout", 8, signal=False),
    ]
    write_jsonl(tmp_path / PAIRS_FILE, records)
    counts = {
        axis: AxisCounts(
            low="l",
            high="h",
            judge="reading_grade",
            min_gap=1,
            prompts=20,
            pairs_kept=20,
            filter_rate=0,
            train_pairs=12,
            heldout_pairs=8,
            mean_gap=1,
        )
        for axis in ("expertise", "style")
    }
    write_manifest(
        tmp_path,
        DatasetManifest(
            dataset_version="test",
            created="now",
            langchain_pad_version="0",
            model="tiny",
            seed=0,
            settings={"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 8},
            prompt_set={"prompts": 20, "heldout": 8},
            axes=counts,
            files={PAIRS_FILE: sha256_file(tmp_path / PAIRS_FILE)},
        ),
    )
    return tmp_path


@pytest.fixture
def tiny_loaded(tiny_model, byte_tokenizer, monkeypatch):
    loaded = LoadedModel("tiny", "tiny", tiny_model, byte_tokenizer, frozenset({EOS_ID}), 128)
    monkeypatch.setattr("langchain_pad.models.load_model", lambda *a, **k: loaded)
    return loaded


SETTINGS = TrainSettings(
    epochs=6,
    learning_rate=3e-3,
    adapted_layers=1,
    min_heldout_pairs=8,
    calibration_prompts=2,
    calibration_magnitudes=(1.0,),
    calibration_new_tokens=4,
)


def test_learnable_axis_ships_and_a_no_signal_axis_is_reported(dataset, tiny_loaded, tmp_path):
    out = tmp_path / "persrm"
    metrics = train_reward_model(dataset, out, settings=SETTINGS, show_progress=False)
    by_axis = {a["name"]: a for a in metrics["axes"]}
    assert by_axis["expertise"]["shipped"], by_axis["expertise"]
    assert by_axis["expertise"]["heldout_accuracy"] >= 0.75
    assert not by_axis["style"]["shipped"]
    assert by_axis["style"]["heldout_accuracy"] <= 0.5
    assert "held-out accuracy" in by_axis["style"]["reason"]
    assert metrics["shipped_axes"] == ["expertise"]

    saved = PersonalizedRewardModel.load(out, tiny_loaded.model)
    assert saved.axes == ["expertise"]
    anchors = json.loads((out / "anchors.json").read_text())
    assert [a["name"] for a in anchors["anchors"]] == ["expertise:elementary", "expertise:expert"]
    low, high = (a["weights"]["expertise"] for a in anchors["anchors"])
    assert low < 0 < high
    card = (out / "README.md").read_text()
    assert "| style |" in card and "no: held-out accuracy" in card
    assert json.loads((out / "metrics.json").read_text())["shipped_axes"] == ["expertise"]


def test_nothing_learnable_means_nothing_shipped(dataset, tiny_loaded, tmp_path):
    strict = TrainSettings(**{**SETTINGS.__dict__, "min_heldout_pairs": 100})
    with pytest.raises(RuntimeError, match="nothing to ship"):
        train_reward_model(dataset, tmp_path / "out", settings=strict, show_progress=False)
    assert not (tmp_path / "out").exists()


def test_select_axes_and_bfloat16_storage(tiny_model, tmp_path):
    rm = PersonalizedRewardModel(tiny_model, ["a", "b", "c"], adapted_layers=1)
    with torch.no_grad():
        rm.heads.add_(torch.randn(rm.heads.shape, generator=torch.Generator().manual_seed(0)))
    keep = rm.heads.detach()[[2, 0]].clone()
    rm.select_axes(["c", "a"])
    assert rm.axes == ["c", "a"]
    torch.testing.assert_close(rm.heads.detach(), keep)
    rm.save(tmp_path, dtype=torch.bfloat16)
    loaded = PersonalizedRewardModel.load(tmp_path, tiny_model)
    assert loaded.heads.dtype == torch.float32
    torch.testing.assert_close(loaded.heads.detach(), keep.to(torch.bfloat16).float())
    with pytest.raises(ValueError, match="non-empty subset"):
        rm.select_axes(["zzz"])


def test_complete_answers_end_with_the_end_of_turn_token(byte_tokenizer):
    pair = PreferencePair("q?", "yes", "no", chosen_complete=True)
    tokenized = tokenize_pair(byte_tokenizer, pair, eos_token_id=EOS_ID)
    assert tokenized.chosen_ids[-1] == EOS_ID and tokenized.rejected_ids[-1] != EOS_ID
    assert EOS_ID not in tokenize_pair(byte_tokenizer, pair).chosen_ids


def test_reward_model_names_resolve(tmp_path, monkeypatch):
    assert resolve_reward_model(str(tmp_path)) == str(tmp_path)
    monkeypatch.setattr("langchain_pad.models.default_reward_model_path", lambda: tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="default reward model is missing"):
        resolve_reward_model("default")


def test_pick_magnitude_takes_the_best_fluent_weight():
    trials = [
        {"magnitude": 2.0, "win_rate": 0.75, "perplexity_ratio": 1.0},
        {"magnitude": 4.0, "win_rate": 0.9, "perplexity_ratio": 1.1},
        {"magnitude": 8.0, "win_rate": 0.9, "perplexity_ratio": 1.2},
        {"magnitude": 16.0, "win_rate": 1.0, "perplexity_ratio": 1.9},
    ]
    # 16 wins most but is not fluent; 4 and 8 tie and the smaller wins the tie
    assert pick_magnitude(trials, 1.3) == 4.0
    assert pick_magnitude(trials, 2.0) == 16.0
    assert pick_magnitude([{**t, "perplexity_ratio": 3.0} for t in trials], 1.3) == 2.0
    # a weight whose least fluent answer is too far gone is not fluent either
    worst = [{**t, "perplexity_ratio_worst": 2.5 if t["magnitude"] == 4.0 else 1.5} for t in trials]
    assert pick_magnitude(worst, 1.3, 2.0) == 8.0
    assert pick_magnitude(worst, 1.3) == 4.0  # without a worst bound, the median alone
    with pytest.raises(ValueError, match="no calibration trials"):
        pick_magnitude([], 1.3)


def test_recalibrate_rewrites_anchors_and_keeps_the_notes(dataset, tiny_loaded, tmp_path):
    out = tmp_path / "persrm"
    train_reward_model(dataset, out, settings=SETTINGS, show_progress=False)
    card = out / "README.md"
    card.write_text(card.read_text() + "\n## Notes\n\n- written by hand\n")
    metrics = recalibrate_anchors(
        out,
        dataset,
        settings=TrainSettings(
            calibration_prompts=2, calibration_magnitudes=(0.5, 3.0), calibration_new_tokens=4
        ),
        show_progress=False,
    )
    assert "recalibrated" in metrics
    trials = next(a for a in metrics["axes"] if a["name"] == "expertise")["calibration"]
    assert sorted({t["magnitude"] for t in trials}) == [0.5, 3.0]
    assert {t["new_tokens"] for t in trials} == {4}
    anchors = json.loads((out / "anchors.json").read_text())
    assert anchors["format_version"] == 2  # strengths: each pole's anchor is +-1
    assert [a["weights"]["expertise"] for a in anchors["anchors"]] == [-1.0, 1.0]
    calibration = json.loads((out / "calibration.json").read_text())
    poles = calibration["axes"]["expertise"]
    assert poles["low"] in (0.5, 3.0) and poles["high"] in (0.5, 3.0)
    assert calibration["guard"] == {"repetition_penalty": 1.15, "plausibility": 0.1}
    text = card.read_text()
    assert "- written by hand" in text and "| expertise | +1 | 3 | 4 |" in text
    # the training settings recorded are kept; only calibration's change
    assert json.loads((out / "metrics.json").read_text())["settings"]["epochs"] == SETTINGS.epochs


def test_recalibrate_needs_a_trained_directory(dataset, tmp_path):
    with pytest.raises(ValueError, match="needs a PersRM written by"):
        recalibrate_anchors(tmp_path, dataset, show_progress=False)
