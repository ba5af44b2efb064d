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
