"""Integration fixtures: the real embedded model (converted once into the cache)."""

from __future__ import annotations

import pytest

from langchain_pad.models import LoadedModel, load_model


@pytest.fixture(scope="session")
def loaded() -> LoadedModel:
    return load_model()


@pytest.fixture(scope="session")
def chat_ids(loaded):
    def encode(question: str) -> tuple[int, ...]:
        ids = loaded.tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True
        )["input_ids"]
        return tuple(ids)

    return encode


PERTURBED_AXES = ["expertise", "informativeness", "style"]


@pytest.fixture(scope="session")
def perturbed_reward_model_dir(loaded, tmp_path_factory) -> str:
    """An untrained PersRM with deterministically perturbed heads: non-zero rewards."""
    import torch

    from langchain_pad.reward_model import PersonalizedRewardModel

    rm = PersonalizedRewardModel(loaded.model, PERTURBED_AXES, beta=1.0, adapted_layers=4)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        rm.heads.add_(0.02 * torch.randn(rm.heads.shape, generator=generator))
    return str(rm.save(tmp_path_factory.mktemp("perturbed-persrm")))
