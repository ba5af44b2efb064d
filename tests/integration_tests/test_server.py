"""The OpenAI-compatible server, as a real process on loopback, driven by real clients.

Clients: the official ``openai`` package (sync and async), LangChain's ``ChatOpenAI``,
and raw ``httpx`` for what those clients refuse to send (bodies too large, bad JSON).
The reward model is a deterministic, perturbed (untrained) PersRM, as in test_pad_real.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from langchain_pad.profiles import PreferenceProfile, SQLiteProfileStore, reward_model_ref

from ._persrm import AXES, save_perturbed
from ._server import running_server

openai = pytest.importorskip("openai")

MODEL = "smollm2-135m-instruct"
QUESTION = "Explain what a black hole is."
ANA = {"expertise": 0.75, "style": -0.5}  # strengths: raw / 4 on the test PersRM


@pytest.fixture(scope="module")
def reward_model_dir(loaded, tmp_path_factory):
    return save_perturbed(loaded, tmp_path_factory.mktemp("persrm"))


@pytest.fixture(scope="module")
def server(reward_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server")
    profiles = tmp / "profiles.sqlite"
    store = SQLiteProfileStore(profiles)
    ref = reward_model_ref(reward_model_dir)
    store.put(
        PreferenceProfile(
            user_id="ana@example.org",
            description="I'm a physicist: technical depth, no small talk.",
            weights=ANA,
            reward_model=ref,
        )
    )
    store.close()
    args = (
        "--reward-model",
        reward_model_dir,
        "--profiles",
        str(profiles),
        "--max-tokens-limit",
        "64",
        "--max-request-bytes",
        "20000",
        "--log-level",
        "warning",
    )
    with running_server(*args, log=tmp / "server.log") as base_url:
        yield base_url


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server, api_key="unused", max_retries=0, timeout=300)


def ask(client, question=QUESTION, max_tokens=16, **extra):
    return client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": question}],
        max_tokens=max_tokens,
        temperature=0,
        **extra,
    )


def test_models_endpoint_lists_the_served_model(client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).owned_by == "langchain-pad"


def test_completion_and_stream_give_the_same_text(client):
    whole = ask(client)
    text = whole.choices[0].message.content
    assert text
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage.completion_tokens <= 16
    assert whole.usage.prompt_tokens > 0

    chunks = list(ask(client, stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == []  # the usage chunk
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason
    assert all(f is None for f in finishes[:-1])


def test_weights_personalize_and_report_what_steered(client):
    plain = ask(client).choices[0].message.content
    steered = ask(client, extra_body={"pad": {"weights": ANA}})
    assert steered.choices[0].message.content != plain
    pad = steered.model_extra["pad"]
    assert pad["axes"] == AXES
    assert pad["weights"] == {"expertise": 3.0, "informativeness": 0.0, "style": -2.0}
    zero = ask(client, extra_body={"pad": {"weights": [0.0, 0.0, 0.0]}})
    assert zero.choices[0].message.content == plain


def test_per_token_rewards_when_asked(client):
    whole = ask(client, extra_body={"pad": {"weights": ANA, "return_rewards": True}})
    tokens = whole.model_extra["pad"]["tokens"]
    n = whole.usage.completion_tokens
    assert len(tokens["token_ids"]) == n
    assert len(tokens["reward"]) == n
    assert any(tokens["changed"])

    chunks = list(
        ask(client, stream=True, extra_body={"pad": {"weights": ANA, "return_rewards": True}})
    )
    per_token = [c.model_extra["pad"] for c in chunks[1:-1]]
    assert sum(len(p["token_ids"]) for p in per_token) == n
    assert all(len(p["reward"]) == len(p["token_ids"]) for p in per_token)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == (
        whole.choices[0].message.content
    )


def test_user_field_selects_the_stored_profile(client):
    by_weights = ask(client, extra_body={"pad": {"weights": ANA}}).choices[0].message.content
    by_user = ask(client, user="ana@example.org")
    assert by_user.choices[0].message.content == by_weights
    profile = by_user.model_extra["pad"]["profile"]
    assert profile["source"] == "user_id"
    assert profile["user_id"] == "ana@example.org"
    by_pad_user = ask(client, extra_body={"pad": {"user_id": "ana@example.org"}})
    assert by_pad_user.choices[0].message.content == by_weights


def test_unknown_user_falls_back_but_an_explicit_pad_user_id_is_404(client):
    plain = ask(client).choices[0].message.content
    stranger = ask(client, user="nobody")
    assert stranger.choices[0].message.content == plain
    assert stranger.model_extra["pad"]["profile"]["source"] == "none"
    with pytest.raises(openai.NotFoundError, match="no preference profile"):
        ask(client, extra_body={"pad": {"user_id": "nobody"}})


def test_preference_text_is_matched_against_stored_profiles(client):
    answer = ask(client, extra_body={"pad": {"preference": "I am a physicist; be technical"}})
    profile = answer.model_extra["pad"]["profile"]
    assert profile["preference"] == "I am a physicist; be technical"
    assert "matches" in profile


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        ({"n": 2}, "BadRequestError", "one choice per request"),
        ({"max_tokens": 65}, "BadRequestError", "limit of 64 tokens"),
        ({"extra_body": {"pad": {"weights": {"humour": 1.0}}}}, "BadRequestError", "humour"),
        ({"extra_body": {"pad": {"weights": [1.0]}}}, "BadRequestError", "3 axes"),
        ({"extra_body": {"pad": {"weights": {"style": 1.5}}}}, "BadRequestError", "strength"),
        ({"extra_body": {"pad": {"colour": "red"}}}, "BadRequestError", "pad.colour"),
        ({"extra_body": {"pad": {"beta": 0.5}}}, "BadRequestError", "no weights"),
        ({"top_p": 1.5}, "BadRequestError", "top_p"),
        ({"logprobs": True}, "BadRequestError", "logprobs"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "BadRequestError",
            "not a bound tool",
        ),
        ({"response_format": {"type": "xml"}}, "BadRequestError", "response_format"),
    ],
)
def test_bad_requests_get_clear_4xx_errors(client, extra, error, message):
    with pytest.raises(getattr(openai, error), match=message):
        ask(client, **extra)


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(
            model="gpt-9", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )


def test_raw_http_errors(server):
    url = f"{server}/chat/completions"
    message = {"role": "user", "content": "hi"}
    too_big = httpx.post(url, json={"messages": [{"role": "user", "content": "x" * 30000}]})
    assert too_big.status_code == 413
    assert "20000" in too_big.json()["error"]["message"]

    bad_json = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400
    assert "not valid JSON" in bad_json.json()["error"]["message"]

    nan = httpx.post(
        url,
        content=json.dumps({"messages": [message], "pad": {"weights": {"style": float("nan")}}}),
        headers={"content-type": "application/json"},
    )
    assert nan.status_code == 400
    assert "finite" in nan.json()["error"]["message"]

    no_messages = httpx.post(url, json={"model": MODEL, "messages": []})
    assert no_messages.status_code == 400
    assert "messages" in no_messages.json()["error"]["message"]

    tool_role = httpx.post(url, json={"messages": [{"role": "tool", "content": "x"}]})
    assert tool_role.status_code == 400
    assert "tool_call_id" in tool_role.json()["error"]["message"]

    image = httpx.post(
        url,
        json={"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
    )
    assert image.status_code == 400
    assert "only text parts" in image.json()["error"]["message"]

    # a malformed streaming request fails before the stream starts: a 4xx, not a broken 200
    stream_bad = httpx.post(
        url, json={"messages": [message], "stream": True, "pad": {"weights": {"humour": 1}}}
    )
    assert stream_bad.status_code == 400


def test_a_client_that_hangs_up_mid_stream_frees_its_row(client, server):
    waves = len(httpx.get(f"{server}/pad/stats").json()["wave_sizes"])
    stream = ask(client, max_tokens=64, stream=True)
    next(iter(stream))
    stream.close()
    assert ask(client, max_tokens=4).choices[0].message.content
    passes = httpx.get(f"{server}/pad/stats").json()["forward_passes_per_wave"][waves:]
    assert passes[0] < 64  # the hung-up row left its batch early


def test_langchain_chat_openai_against_the_server(client, server):
    from langchain_openai import ChatOpenAI

    expected = ask(client, extra_body={"pad": {"weights": ANA}}).choices[0].message.content
    llm = ChatOpenAI(
        base_url=server,
        api_key="unused",
        model=MODEL,
        temperature=0,
        max_tokens=16,
        max_retries=0,
        extra_body={"pad": {"weights": ANA}},
    )
    answer = llm.invoke(QUESTION)
    assert answer.content == expected
    assert answer.usage_metadata["output_tokens"] > 0
    streamed = "".join(str(chunk.content) for chunk in llm.stream(QUESTION))
    assert streamed == expected

    as_user = ChatOpenAI(
        base_url=server, api_key="unused", model=MODEL, temperature=0, max_tokens=16
    )
    assert as_user.invoke(QUESTION, user="ana@example.org").content == expected


def test_sixteen_concurrent_streaming_clients_each_get_their_own_answer(server, client):
    """16 users, 16 different ``w_p``, streamed at once: each gets what it gets alone."""
    users = [
        {"weights": [e, i, s]}
        for e in (-0.5, 0.5)
        for i in (-0.375, 0.375)
        for s in (-0.625, 0.0, 0.25, 0.625)
        if len(AXES) == 3
    ][:16]
    questions = [
        "What is gravity?",
        "Describe a cat.",
        "How do plants grow?",
        "What is music?",
    ]
    requests = [(questions[i % 4], users[i]) for i in range(16)]
    before = httpx.get(f"{server}/pad/stats").json()

    async def one(async_client, question, pad):
        stream = await async_client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": question}],
            max_tokens=16,
            temperature=0,
            stream=True,
            extra_body={"pad": pad},
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def together():
        async_client = openai.AsyncOpenAI(base_url=server, api_key="unused", max_retries=0)
        return await asyncio.gather(*(one(async_client, q, p) for q, p in requests))

    concurrent = asyncio.run(together())
    after = httpx.get(f"{server}/pad/stats").json()
    alone = [
        ask(client, q, max_tokens=16, extra_body={"pad": p}).choices[0].message.content
        for q, p in requests
    ]
    assert concurrent == alone
    assert len(set(alone)) > 4  # the 16 profiles really answer differently
    new_waves = after["wave_sizes"][len(before["wave_sizes"]) :]
    assert sum(new_waves) == 16
    assert max(new_waves) >= 8, new_waves  # shared forward passes, not one at a time


def test_a_short_request_is_not_stuck_behind_a_long_batch(client, server):
    """A request arriving while another decodes starts its own wave (max_waves)."""
    import threading
    import time

    done: dict[str, float] = {}

    def long_one():
        for _chunk in ask(client, max_tokens=64, stream=True):
            pass
        done["long"] = time.monotonic()

    thread = threading.Thread(target=long_one)
    thread.start()
    time.sleep(2.0)  # the long request is decoding by now
    assert ask(client, question="Hi!", max_tokens=3).choices[0].message.content
    done["short"] = time.monotonic()
    thread.join(300)
    assert done["short"] < done["long"]
    assert httpx.get(f"{server}/pad/stats").json()["max_waves"] == 4
