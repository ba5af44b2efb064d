"""PersRM on a tiny random Llama: features, save/load checks, weight vectors."""

from __future__ import annotations

import json

import pytest
import torch

from langchain_pad.reward_model import (
    MAX_ABS_WEIGHT,
    PersonalizedRewardModel,
    RewardModelMismatchError,
)

AXES = ["expertise", "informativeness", "style"]


def calibrate_uniform(directory, magnitude: float = 4.0):
    """Give a saved test PersRM a calibration: every pole at raw ``magnitude``."""
    from langchain_pad.calibration import PoleCalibration, write_calibration

    write_calibration(directory, PoleCalibration.uniform(AXES, magnitude))
    return directory


def perturbed(model, scale: float = 0.3, seed: int = 0) -> PersonalizedRewardModel:
    rm = PersonalizedRewardModel(model, AXES, beta=1.0, adapted_layers=1)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        rm.heads.add_(scale * torch.randn(rm.heads.shape, generator=generator))
    return rm


def test_untrained_reward_model_has_zero_features(tiny_model):
    rm = PersonalizedRewardModel(tiny_model, AXES, adapted_layers=1)
    features = rm.sequence_features(list(b"prompt"), list(b"a response"))
    assert features.shape == (3,)
    assert torch.allclose(features, torch.zeros(3), atol=1e-4)


def test_perturbed_heads_give_axis_specific_features(tiny_model):
    features = perturbed(tiny_model).sequence_features(list(b"prompt"), list(b"a response"))
    assert features.abs().min() > 1e-3
    assert len(set(features.tolist())) == 3


def test_adapted_layers_must_leave_a_trunk(tiny_model):
    with pytest.raises(ValueError, match="adapted_layers must be between 1 and 1"):
        PersonalizedRewardModel(tiny_model, AXES, adapted_layers=2)


def test_axis_names_must_be_unique(tiny_model):
    with pytest.raises(ValueError, match="unique"):
        PersonalizedRewardModel(tiny_model, ["a", "a"], adapted_layers=1)


def test_save_and_load_round_trip(tiny_model, tmp_path):
    rm = perturbed(tiny_model)
    rm.save(tmp_path)
    saved = json.loads((tmp_path / "persrm_config.json").read_text())
    assert saved["axes"] == AXES and saved["format_version"] == 1
    loaded = PersonalizedRewardModel.load(tmp_path, tiny_model)
    assert torch.equal(loaded.heads, rm.heads)
    prompt, response = list(b"p"), list(b"response")
    assert torch.allclose(
        loaded.sequence_features(prompt, response), rm.sequence_features(prompt, response)
    )


def test_loading_onto_another_base_model_is_refused(tiny_model, tmp_path):
    from transformers import LlamaForCausalLM

    perturbed(tiny_model).save(tmp_path)
    torch.manual_seed(123)
    other = LlamaForCausalLM(tiny_model.config)
    with pytest.raises(RewardModelMismatchError, match="only works with the exact base model"):
        PersonalizedRewardModel.load(tmp_path, other)


def test_loading_a_directory_without_a_reward_model(tiny_model, tmp_path):
    with pytest.raises(RewardModelMismatchError, match="not a PersRM directory"):
        PersonalizedRewardModel.load(tmp_path, tiny_model)


def test_loading_another_format_version_is_refused(tiny_model, tmp_path):
    perturbed(tiny_model).save(tmp_path)
    config = json.loads((tmp_path / "persrm_config.json").read_text())
    config["format_version"] = 99
    (tmp_path / "persrm_config.json").write_text(json.dumps(config))
    with pytest.raises(RewardModelMismatchError, match="format 99"):
        PersonalizedRewardModel.load(tmp_path, tiny_model)


def test_weight_vector_from_dict_and_sequence(tiny_model):
    rm = perturbed(tiny_model)
    assert rm.weight_vector({"style": 1.5}) == (0.0, 0.0, 1.5)
    assert rm.weight_vector([1, -1, 0]) == (1.0, -1.0, 0.0)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"humour": 1.0}, "unknown preference axes"),
        ([1.0, 2.0], "got 2 preference weights"),
        ([float("nan"), 0, 0], "finite"),
        ([MAX_ABS_WEIGHT + 1, 0, 0], "within"),
    ],
)
def test_bad_weights_are_refused(tiny_model, weights, message):
    with pytest.raises(ValueError, match=message):
        perturbed(tiny_model).weight_vector(weights)


def test_shared_prompt_references_equal_whole_sequence_forwards(tiny_model):
    rm = perturbed(tiny_model)
    prompt, responses = list(b"shared prompt"), [list(b"first answer"), list(b"second")]
    shared = rm.references(prompt, responses)
    for response, (trunk, ref, start) in zip(responses, shared, strict=True):
        ids = torch.tensor([prompt + response])
        full_trunk, logits = rm.trunk_hidden(ids)
        expected_ref = torch.log_softmax(logits[0, start : start + len(response)], -1).gather(
            -1, torch.tensor(response).view(-1, 1)
        )[:, 0]
        assert start == len(prompt) - 1
        assert torch.allclose(trunk, full_trunk[0], atol=1e-5)
        assert torch.allclose(ref, expected_ref, atol=1e-5)
    features = rm.responses_features(prompt, responses)
    assert torch.allclose(features[1], rm.sequence_features(prompt, responses[1]), atol=1e-5)
