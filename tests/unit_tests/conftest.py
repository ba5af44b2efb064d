"""Fast fixtures: a tiny randomly initialised Llama and a byte-level tokenizer.

They exercise the real token loop (KV cache, left padding, row pruning) in
milliseconds, with no weights to download or convert.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest
import torch
from hypothesis import settings

# Property tests draw the same examples on every run (a green main stays green), as
# hypothesis recommends for CI; HYPOTHESIS_PROFILE=explore searches anew each run, which
# is how the property tests are meant to find new cases during development.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Tiny tensors gain nothing from intra-op threads, and with another process on the
# machine OpenMP threads spin against each other: one thread keeps the suite fast.
torch.set_num_threads(1)

EOS_ID = 256
PAD_ID = 257


class ByteTokenizer:
    """Ids 0-255 are bytes, 256 is EOS; decoding replaces broken UTF-8 like BPE does."""

    pad_token_id = PAD_ID
    eos_token_id = EOS_ID
    chat_template = None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(
        self,
        ids: Sequence[int],
        skip_special_tokens: bool = True,
        clean_up_tokenization_spaces: bool = False,
    ) -> str:
        data = bytes(i for i in ids if i < 256)
        return data.decode("utf-8", errors="replace")

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": self.encode(text)}


@pytest.fixture(scope="session")
def byte_tokenizer() -> ByteTokenizer:
    return ByteTokenizer()


@pytest.fixture(scope="session")
def tiny_model() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=258,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    model = LlamaForCausalLM(config)
    model.train(False)
    model.requires_grad_(False)
    return model


@pytest.fixture
def tiny_engine(tiny_model, byte_tokenizer):
    from langchain_pad.engine import DecodingEngine

    return DecodingEngine(
        tiny_model, byte_tokenizer, eos_token_ids=frozenset({EOS_ID}), context_length=128
    )


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model, byte_tokenizer):
    from langchain_pad.models import LoadedModel

    return LoadedModel(
        name="tiny",
        location="tiny-random-llama",
        model=tiny_model,
        tokenizer=byte_tokenizer,
        eos_token_ids=frozenset({EOS_ID}),
        context_length=128,
    )


@pytest.fixture(scope="session")
def tiny_persrm_dir(tiny_model, tmp_path_factory) -> str:
    """A saved PersRM whose heads are perturbed, so that rewards are not all zero; its
    calibration maps every pole to raw weight 4 (strength 0.5 is raw 2)."""
    from .test_reward_model import calibrate_uniform, perturbed

    rm = perturbed(tiny_model, scale=0.5)
    directory = rm.save(tmp_path_factory.mktemp("persrm"))
    return str(calibrate_uniform(directory))


@pytest.fixture(scope="session")
def tiny_chat_model(tiny_loaded, tiny_persrm_dir):
    """A PADChatModel class running the tiny model: ``tiny_chat_model(max_tokens=8)``."""
    from langchain_pad import PADChatModel
    from langchain_pad.runtime import PADRuntime

    runtime = PADRuntime.from_loaded(tiny_loaded)

    def build(**kwargs):
        kwargs.setdefault("reward_model", tiny_persrm_dir)
        kwargs.setdefault("max_tokens", 10)
        kwargs.setdefault("runtime", runtime)
        return PADChatModel(**kwargs)

    yield build
    runtime.close()
