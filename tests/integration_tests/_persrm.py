"""A deterministic, perturbed (untrained) PersRM for tests that need PAD to change text."""

from __future__ import annotations

import torch

from langchain_pad.reward_model import PersonalizedRewardModel

AXES = ["expertise", "informativeness", "style"]


def perturbed_reward_model(loaded, scale: float = 0.02) -> PersonalizedRewardModel:
    rm = PersonalizedRewardModel(loaded.model, AXES, beta=1.0, adapted_layers=4)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        rm.heads.add_(scale * torch.randn(rm.heads.shape, generator=generator))
    return rm


CALIBRATION_MAGNITUDE = 4.0
"""The test PersRM's calibration: every pole at raw weight 4 (strength 0.5 is raw 2)."""


def save_perturbed(loaded, directory, scale: float = 0.02) -> str:
    """Save a perturbed PersRM with a uniform calibration, so strengths mean raw / 4."""
    from langchain_pad.calibration import PoleCalibration, write_calibration

    path = perturbed_reward_model(loaded, scale).save(directory)
    write_calibration(path, PoleCalibration.uniform(AXES, CALIBRATION_MAGNITUDE))
    return str(path)
