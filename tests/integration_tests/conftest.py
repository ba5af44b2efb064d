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
    """An untrained PersRM with deterministically perturbed heads: non-zero rewards;
    calibrated uniformly (strength 1 is raw 4, see ``_persrm.save_perturbed``)."""
    from ._persrm import save_perturbed

    return save_perturbed(loaded, tmp_path_factory.mktemp("perturbed-persrm"))
