"""The OpenAI-compatible app on a tiny model, in process (no weights, no sockets)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from langchain_pad import PADChatModel
from langchain_pad.integrations.server import ServerSettings, create_app
from langchain_pad.models import LoadedModel
from langchain_pad.profiles import InMemoryProfileStore, PreferenceProfile, reward_model_ref
from langchain_pad.profiles.testing import ANCHORS, HashingEmbedder
from langchain_pad.runtime import PADRuntime

from .conftest import EOS_ID
from .test_reward_model import calibrate_uniform, perturbed

ANA = {"expertise": 0.5, "informativeness": -0.25, "style": 0.125}


@pytest.fixture(scope="module")
def reward_model_dir(tiny_model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("persrm")
    perturbed(tiny_model, scale=0.5).save(directory)
    calibrate_uniform(directory)
    return str(directory)


@pytest.fixture
def client(monkeypatch, tiny_model, byte_tokenizer, reward_model_dir):
    loaded = LoadedModel(
        name="tiny",
        location="tiny-server",
        model=tiny_model,
        tokenizer=byte_tokenizer,
        eos_token_ids=frozenset({EOS_ID}),
        context_length=128,
    )
    ref = reward_model_ref(reward_model_dir)
    anchors = [a.model_copy(update={"reward_model": ref}) for a in ANCHORS]
    store = InMemoryProfileStore(embedder=HashingEmbedder(), anchors=anchors)
    store.put(PreferenceProfile(user_id="ana", weights=ANA, reward_model=ref))
    runtime = PADRuntime.from_loaded(loaded)
    llm = PADChatModel(runtime=runtime, reward_model=reward_model_dir, profile_store=store)
    settings = ServerSettings(max_tokens_limit=8, max_request_bytes=4000, batch_window=0.0)
    with TestClient(create_app(settings, llm=llm)) as client:
        yield client
    runtime.close()


def body(**extra):
    return {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], **extra}


def events(response):
    lines = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


def test_models_and_health(client):
    assert client.get("/health").json()["status"] == "ok"
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["tiny"]
    assert client.get("/v1/models/other").status_code == 404


def test_completion_shape_and_usage(client):
    reply = client.post("/v1/chat/completions", json=body(max_tokens=5)).json()
    assert reply["object"] == "chat.completion"
    choice = reply["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] in ("stop", "length")
    assert 0 < reply["usage"]["completion_tokens"] <= 5
    assert reply["usage"]["total_tokens"] == (
        reply["usage"]["prompt_tokens"] + reply["usage"]["completion_tokens"]
    )


def test_stream_is_server_sent_events_with_the_same_text(client):
    whole = client.post("/v1/chat/completions", json=body(max_tokens=6)).json()
    response = client.post(
        "/v1/chat/completions",
        json=body(max_tokens=6, stream=True, stream_options={"include_usage": True}),
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = events(response)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == whole["usage"]


def test_rewards_and_profiles(client):
    steered = client.post(
        "/v1/chat/completions",
        json=body(max_tokens=6, pad={"weights": ANA, "return_rewards": True}),
    ).json()
    tokens = steered["pad"]["tokens"]
    assert len(tokens["reward"]) == steered["usage"]["completion_tokens"]
    by_user = client.post("/v1/chat/completions", json=body(max_tokens=6, user="ana")).json()
    assert by_user["choices"][0]["message"] == steered["choices"][0]["message"]
    assert by_user["pad"]["profile"]["source"] == "user_id"
    streamed = events(
        client.post(
            "/v1/chat/completions",
            json=body(max_tokens=6, stream=True, pad={"weights": ANA, "return_rewards": True}),
        )
    )
    per_token = [c["pad"] for c in streamed[1:-1]]
    assert sum(len(p["token_ids"]) for p in per_token) == steered["usage"]["completion_tokens"]
    assert streamed[-1]["pad"]["strengths"] == ANA


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (body(n=3), 400, "one choice per request"),
        (body(max_tokens=9), 400, "limit of 8 tokens"),
        (body(model="gpt-4o"), 404, "does not exist"),
        (body(pad={"weights": {"humour": 1}}), 400, "unknown preference axes"),
        (body(pad={"weights": [1.0, 2.0]}), 400, "3 axes"),
        (body(pad={"user_id": "nobody"}), 404, "no preference profile"),
        (body(pad={"beta": 2.0}), 400, "no weights"),
        (body(pad={"colour": 1}), 400, "pad.colour: unknown parameter"),
        (body(temperature=-1), 400, "temperature"),
        (body(messages=[]), 400, "messages"),
        (body(messages=[{"role": "tool", "content": "x"}]), 400, "tool_call_id"),
        (body(messages=[{"role": "critic", "content": "x"}]), 400, "role 'critic'"),
        (body(tools=[{"type": "function"}]), 400, "cannot be converted"),
        (body(response_format={"type": "xml"}), 400, "response_format type 'xml'"),
        (body(messages=[{"role": "user", "content": "x" * 5000}]), 413, "4000"),
        (body(messages=[{"role": "user", "content": "x" * 200}]), 400, "context"),
    ],
)
def test_bad_requests(client, payload, status, message):
    for stream in (False, True):
        response = client.post("/v1/chat/completions", json={**payload, "stream": stream})
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert message in error["message"]
        assert error["type"] == "invalid_request_error"


def test_not_json(client):
    response = client.post("/v1/chat/completions", content=b"[1, 2")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]
    assert client.post("/v1/chat/completions", json=[1]).status_code == 400


def test_stats_show_waves(client):
    client.post("/v1/chat/completions", json=body(max_tokens=2))
    stats = client.get("/v1/pad/stats").json()
    assert stats["totals"]["waves"] >= 1 and stats["totals"]["forward_passes"] >= 1
    assert stats["decoding_threads"] == 1 and stats["window"] == len(stats["wave_sizes"])


def test_a_failure_mid_stream_ends_it_with_an_error_event(client, monkeypatch):
    original = PADChatModel._astream

    async def breaks_after_one_token(self, *args, **kwargs):
        async for chunk in original(self, *args, **kwargs):
            yield chunk
            raise RuntimeError("decoder fell over")

    monkeypatch.setattr(PADChatModel, "_astream", breaks_after_one_token)
    response = client.post("/v1/chat/completions", json=body(max_tokens=6, stream=True))
    assert response.status_code == 200
    lines = [line for line in response.text.splitlines() if line.startswith("data: ")]
    last = json.loads(lines[-1][6:])
    assert "decoder fell over" in last["error"]["message"]
    assert last["error"]["type"] == "server_error"


def test_serve_command_line():
    from langchain_pad.cli import build_parser

    args = build_parser().parse_args(
        ["serve", "--port", "9000", "--reward-model", "none", "--max-tokens-limit", "32"]
    )
    assert (args.port, args.reward_model, args.max_tokens_limit) == (9000, "none", 32)
    assert args.handler.__name__ == "_cmd_serve"


def test_serve_refuses_a_missing_reward_model(tmp_path, capsys):
    from langchain_pad.cli import main

    assert main(["serve", "--reward-model", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err
