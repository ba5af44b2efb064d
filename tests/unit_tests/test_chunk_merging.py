"""Adding the chunks of a stream never raises, whatever the rewards (property test).

LangChain merges chunk metadata key by key and refuses two different floats under one
key; these tests throw arbitrary floats (NaN, infinities, -0.0, equal and unequal
values) at the chunk builder and merge the results every way LangChain does.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.outputs.chat_generation import merge_chat_generation_chunks

from langchain_pad._chunks import PreparedCall
from langchain_pad.engine import GenerationRequest, SamplingParams, TokenEvent
from langchain_pad.engine.pad import PADGuidance
from langchain_pad.records import PADStepRecord

from .conftest import ByteTokenizer

AXES = ["expertise", "informativeness", "style"]
any_float = st.floats(allow_nan=True, allow_infinity=True)
token = st.fixed_dictionaries(
    {
        "id": st.integers(0, 255),
        "base_id": st.integers(0, 255),
        "text": st.text(max_size=3),
        "logprob": any_float,
        "reward": any_float,
        "features": st.lists(any_float, min_size=3, max_size=3),
        "base_logprob": any_float,
        "base_rank": st.integers(0, 9),
    }
)


def chunks_for(tokens: list[dict], weights: tuple[float, ...]) -> list:
    request = GenerationRequest((1, 2), SamplingParams(len(tokens)), PADGuidance(weights))
    call = PreparedCall("m", None, request, ByteTokenizer(), AXES, 0.7)  # type: ignore[arg-type]
    chunks = []
    for i, t in enumerate(tokens):
        record = PADStepRecord(
            reward=t["reward"],
            features=tuple(t["features"]),
            base_logprob=t["base_logprob"],
            base_rank=t["base_rank"],
            base_token_id=t["base_id"] if t["base_rank"] else t["id"],
        )
        event = TokenEvent(
            row=0,
            token_id=t["id"],
            text=t["text"],
            logprob=t["logprob"],
            finish_reason="length" if i == len(tokens) - 1 else None,
            record=record,
            token_text=t["text"],
        )
        chunks.append(call.chunk(event))
    return chunks


def same(a: list, b: list) -> bool:
    """Equality where NaN equals NaN (``repr`` keeps -0.0 apart from 0.0 too)."""
    return repr(a) == repr(b)


@settings(max_examples=150, deadline=None)
@given(
    tokens=st.lists(token, min_size=1, max_size=12),
    weights=st.tuples(*[st.floats(-5, 5)] * 3),
)
def test_merging_all_chunks_never_raises_and_keeps_every_value(tokens, weights):
    chunks = chunks_for(tokens, weights)
    n = len(tokens)

    message = chunks[0].message
    for chunk in chunks[1:]:
        message = message + chunk.message
    merged = merge_chat_generation_chunks(chunks)
    assert merged is not None
    result = generate_from_stream(iter(chunks))

    for pad in (
        message.response_metadata["pad"],
        merged.generation_info["pad"],
        result.generations[0].generation_info["pad"],
        result.generations[0].message.response_metadata["pad"],
    ):
        assert all(len(values) == n for values in pad.values())
        assert same(pad["reward"], [t["reward"] for t in tokens])
        assert same(pad["features"], [t["features"] for t in tokens])
        assert same(pad["base_logprob"], [t["base_logprob"] for t in tokens])
        assert pad["token_text"] == [t["text"] for t in tokens]
        assert pad["base_rank"] == [t["base_rank"] for t in tokens]
    summary = message.response_metadata["pad_summary"]
    assert summary["tokens"] == n
    assert message.response_metadata["pad_weights"] == dict(zip(AXES, weights, strict=True))


@settings(max_examples=50, deadline=None)
@given(value=any_float, n=st.integers(2, 8))
def test_identical_and_special_rewards_on_every_token(value, n):
    tokens = [
        {
            "id": 65,
            "base_id": 66,
            "text": "A",
            "logprob": value,
            "reward": value,
            "features": [value, -value, 0.0],
            "base_logprob": value,
            "base_rank": 0,
        }
    ] * n
    chunks = chunks_for(tokens, (1.0, 0.0, 0.0))
    merged = merge_chat_generation_chunks(chunks)
    assert merged is not None
    assert same(merged.generation_info["pad"]["reward"], [value] * n)
    assert math.isnan(value) or merged.message.response_metadata["pad_summary"]["tokens"] == n
