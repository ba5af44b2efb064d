"""Property tests (issue 17): any JSON-ish input to a request model either becomes values
the engine can carry or is refused with the documented error naming the field.

Never a raw TypeError / KeyError / AttributeError, never a 500: the server's request
parsing (the whole ``POST /v1/chat/completions`` path on a tiny model, so every check
between the bytes and the decoding thread runs), ``SamplingParams``, ``check_weights``
and ``PreferenceQuery``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from langchain_pad.engine.types import SEED_MAX, SEED_MIN, SamplingParams
from langchain_pad.preferences import MAX_ABS_WEIGHT, PreferenceQuery, check_weights

AXES = ["expertise", "informativeness", "style"]

# ---------------------------------------------------------------------- JSON-ish values

surrogates = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2)
"""Lone UTF-16 surrogates: JSON's ``\\ud800`` escapes carry them into Python strings."""
leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and the infinities included
    | st.text(max_size=8)
    | surrogates
)
json_ish = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def either(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A plausible value of the field, or anything at all."""
    return good | json_ish


def plausible(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Only the plausible value (a body spoiled in one field is drawn separately)."""
    return good


# ---------------------------------------------------------------------- SamplingParams

SAMPLING_FIELDS = {
    "max_new_tokens": either(st.integers(min_value=-2, max_value=4096)),
    "temperature": either(st.floats(min_value=-1, max_value=5)),
    "top_p": either(st.floats(min_value=-0.5, max_value=1.5)),
    "top_k": either(st.integers(min_value=-2, max_value=64)),
    "seed": either(st.integers(min_value=SEED_MIN - 2, max_value=SEED_MAX + 2)),
    "stop": either(st.lists(st.text(max_size=4), max_size=3).map(tuple)),
    "repetition_penalty": either(st.floats(min_value=-1, max_value=3)),
}
_MESSAGE_NAMES = {"stop": ("stop",)}


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({}, optional=SAMPLING_FIELDS))
def test_sampling_params_carry_or_name_the_field(kwargs):
    try:
        params = SamplingParams(**kwargs)
    except ValueError as exc:
        message = str(exc)
        named = [f for f in kwargs if message.startswith(_MESSAGE_NAMES.get(f, (f,)))]
        assert named, f"{message!r} names none of {sorted(kwargs)}"
        return
    # what the engine does with them must work
    assert isinstance(params.max_new_tokens, int) and params.max_new_tokens >= 1
    assert math.isfinite(params.temperature) and params.temperature >= 0
    assert 0 < params.top_p <= 1
    assert params.top_k is None or params.top_k >= 1
    assert math.isfinite(params.repetition_penalty) and params.repetition_penalty > 0
    assert all(isinstance(s, str) and s for s in params.stop)
    if params.seed is not None:
        torch.Generator().manual_seed(params.seed)
    torch.tensor([params.temperature, params.top_p], dtype=torch.float32)


# ---------------------------------------------------------------------- check_weights

weights_inputs = either(
    st.dictionaries(st.sampled_from([*AXES, "humour"]), leaf, max_size=4)
    | st.lists(leaf | st.floats(min_value=-30, max_value=30), max_size=4)
    | st.dictionaries(st.sampled_from(AXES), st.floats(min_value=-25, max_value=25), max_size=3)
)


@settings(max_examples=400, deadline=None)
@given(weights_inputs)
def test_check_weights_carries_or_names_the_parameter(weights):
    try:
        vector = check_weights(weights, AXES)
    except ValueError as exc:
        assert str(exc).startswith("weights"), str(exc)
        return
    assert len(vector) == len(AXES)
    assert all(type(v) is float and math.isfinite(v) and abs(v) <= MAX_ABS_WEIGHT for v in vector)
    # float32 (what the guide computes in) holds them exactly enough to stay finite
    assert torch.isfinite(torch.tensor(vector, dtype=torch.float32)).all()


# ---------------------------------------------------------------------- PreferenceQuery


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "weights": weights_inputs,
            "user_id": either(st.text(max_size=12)),
            "preference": either(st.text(max_size=40)),
        },
    )
)
def test_preference_query_carries_or_names_the_field(kwargs):
    try:
        query = PreferenceQuery(**kwargs)
    except ValueError as exc:
        assert str(exc).startswith(("user_id", "preference")), str(exc)
        return
    assert query.user_id is None or (isinstance(query.user_id, str) and query.user_id)
    assert query.preference is None or isinstance(query.preference, str)
    if query.weights is not None:  # the resolver checks the weights with check_weights
        try:
            check_weights(query.weights, AXES)
        except ValueError as exc:
            assert str(exc).startswith("weights")


# ---------------------------------------------------------------------- the server's parsing

pytest.importorskip("fastapi")

ROLES = st.sampled_from(["user", "system", "developer", "assistant", "tool", "bot"])
parts = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "image_url"])},
        optional={"text": either(st.text(max_size=8))},
    ),
    max_size=2,
)
message = st.fixed_dictionaries(
    {"role": either(ROLES)},
    optional={
        "content": either(st.text(max_size=12) | surrogates | parts),
        "name": either(st.text(max_size=4)),
        "tool_call_id": either(st.text(max_size=4)),
        "tool_calls": json_ish,
    },
)
pad_options = st.fixed_dictionaries(
    {},
    optional={
        "weights": weights_inputs,
        "beta": either(st.floats(min_value=-1, max_value=2e4)),
        "user_id": either(st.sampled_from(["ana-7f3e", "nobody", ""])),
        "preference": either(st.text(max_size=30)),
        "return_rewards": either(st.booleans()),
        "colour": leaf,
    },
)
schema = st.fixed_dictionaries(
    {"type": st.just("object")},
    optional={"properties": st.just({"a": {"type": "string"}}), "title": st.text(max_size=4)},
)
response_format = st.fixed_dictionaries(
    {"type": either(st.sampled_from(["text", "json_object", "json_schema", "xml"]))},
    optional={
        "json_schema": either(st.fixed_dictionaries({"name": st.just("s"), "schema": schema}))
    },
)
good_body = st.fixed_dictionaries(
    {"messages": plausible(st.lists(message, max_size=3))},
    optional={
        "model": plausible(st.just("tiny")),
        "stream": plausible(st.booleans()),
        "stream_options": plausible(
            st.fixed_dictionaries({"include_usage": plausible(st.booleans())})
        ),
        "max_tokens": plausible(st.integers(min_value=-1, max_value=12)),
        "max_completion_tokens": plausible(st.integers(min_value=-1, max_value=12)),
        "temperature": plausible(st.floats(min_value=-1, max_value=3)),
        "top_p": plausible(st.floats(min_value=-0.5, max_value=1.5)),
        "seed": plausible(st.integers(min_value=SEED_MIN - 2, max_value=SEED_MAX + 2)),
        "stop": plausible(st.text(max_size=3) | st.lists(st.text(max_size=3), max_size=17)),
        "n": plausible(st.integers(min_value=0, max_value=3)),
        "user": plausible(st.sampled_from(["ana-7f3e", "nobody"])),
        "pad": plausible(pad_options),
        "logprobs": leaf,
        "frequency_penalty": leaf,
        "response_format": plausible(response_format),
        "tool_choice": leaf,
    },
)


def _spoil(drawn: tuple[dict[str, Any], str | None, Any]) -> dict[str, Any]:
    data, key, value = drawn
    return data if key is None else {**data, key: value}


body = st.tuples(
    good_body,
    st.sampled_from(
        [
            None,
            "messages",
            "model",
            "stream",
            "max_tokens",
            "temperature",
            "top_p",
            "seed",
            "stop",
            "n",
            "user",
            "pad",
            "response_format",
            "tool_choice",
        ]
    ),
    json_ish,
).map(_spoil) | st.fixed_dictionaries(
    {"messages": either(st.lists(message, max_size=3))},
    optional={"pad": either(pad_options), "stream": json_ish, "seed": json_ish},
)
"""Mostly-plausible bodies with at most one field replaced by anything, or wild ones."""

CLIENT_ERRORS = {400, 404, 409, 413}


@pytest.fixture(scope="module")
def client(tiny_model, byte_tokenizer, tiny_persrm_dir):
    """A server on the tiny model with one stored profile (ana); single-tenant."""
    from fastapi.testclient import TestClient

    from langchain_pad import PADChatModel
    from langchain_pad.integrations.server import ServerSettings, create_app
    from langchain_pad.models import LoadedModel
    from langchain_pad.profiles import InMemoryProfileStore, PreferenceProfile, reward_model_ref
    from langchain_pad.profiles.testing import ANCHORS, HashingEmbedder
    from langchain_pad.runtime import PADRuntime

    from .conftest import EOS_ID

    loaded = LoadedModel(
        name="tiny",
        location="tiny-properties",
        model=tiny_model,
        tokenizer=byte_tokenizer,
        eos_token_ids=frozenset({EOS_ID}),
        context_length=128,
    )
    ref = reward_model_ref(tiny_persrm_dir)
    anchors = [a.model_copy(update={"reward_model": ref}) for a in ANCHORS]
    store = InMemoryProfileStore(embedder=HashingEmbedder(), anchors=anchors)
    store.put(PreferenceProfile(user_id="ana-7f3e", weights={"expertise": 0.75}, reward_model=ref))
    runtime = PADRuntime.from_loaded(loaded)
    llm = PADChatModel(runtime=runtime, reward_model=tiny_persrm_dir, profile_store=store)
    settings_ = ServerSettings(max_tokens_limit=6, batch_window=0.0, max_request_bytes=100_000)
    with TestClient(create_app(settings_, llm=llm), raise_server_exceptions=False) as test_client:
        yield test_client
    runtime.close()


def _check_error(status: int, payload: Any) -> None:
    assert status in CLIENT_ERRORS, (status, payload)
    error = payload["error"]
    assert error["type"] == "invalid_request_error", payload
    assert isinstance(error["message"], str) and error["message"]
    if error.get("param"):
        top = error["param"].split(".")[0].split("[")[0]
        assert top in error["message"], payload


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body)
def test_any_request_body_is_answered_or_refused_with_a_named_4xx(client, data):
    text = json.dumps(data)  # NaN/Infinity as Python writes them; surrogates as \\ud800
    response = client.post(
        "/v1/chat/completions", content=text.encode(), headers={"content-type": "application/json"}
    )
    assert "Traceback" not in response.text
    event(f"status {response.status_code}")
    if response.status_code != 200:
        _check_error(response.status_code, response.json())
        return
    if response.headers["content-type"].startswith("text/event-stream"):
        frames = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        events = [json.loads(f) for f in frames if f != "[DONE]"]
        for frame in events:  # a failure after the 200 header is an error event
            if "error" in frame:
                _check_error(400, frame)
        return
    answer = response.json()
    assert answer["choices"][0]["message"]["role"] == "assistant"
