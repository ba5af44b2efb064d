"""Issue 17, the server's part, on a tiny model in process: what a response may reveal,
clear errors for bad bodies, /health on the store, and the disconnect watch.

The real-process halves (a client that gives up; a body that never arrives) are in
``tests/integration_tests/test_server_robustness.py``.
"""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

from langchain_pad import PADChatModel
from langchain_pad.integrations.server import ServerSettings, create_app
from langchain_pad.integrations.server_requests import MAX_JSON_DEPTH
from langchain_pad.integrations.server_responses import WITHHELD, unless_disconnected
from langchain_pad.models import LoadedModel
from langchain_pad.profiles import InMemoryProfileStore, PreferenceProfile, reward_model_ref
from langchain_pad.profiles.testing import ANCHORS, HashingEmbedder
from langchain_pad.runtime import PADRuntime

from .conftest import EOS_ID
from .test_reward_model import calibrate_uniform, perturbed

ANA = "ana-7f3e"
"""A user id no response of a multi-user server may contain."""
ANA_WEIGHTS = {"expertise": 0.625, "informativeness": -0.3125, "style": 0.1875}
ANA_TEXT = "technical depth for a physicist with no small talk"
BOB = "bob-91c2"
"""A stored profile learned for another reward model: unusable here."""
CAROL = "carol-55d0"
"""A stored profile with the served reward model's id but an axis it does not have."""


@pytest.fixture(scope="module")
def reward_model_dir(tiny_model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("persrm")
    perturbed(tiny_model, scale=0.5).save(directory)
    calibrate_uniform(directory)
    return str(directory)


@pytest.fixture
def make_client(tiny_model, byte_tokenizer, reward_model_dir):
    """``make_client(**settings)``: a TestClient on the tiny model with ana and bob stored."""
    opened: list[tuple[TestClient, PADRuntime]] = []

    def make(**settings):
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
        store.put(
            PreferenceProfile(
                user_id=ANA, description=ANA_TEXT, weights=ANA_WEIGHTS, reward_model=ref
            )
        )
        other = ref.model_copy(update={"id": "another-persrm"})
        store.put(PreferenceProfile(user_id=BOB, weights=ANA_WEIGHTS, reward_model=other))
        odd = ref.model_copy(update={"axes": (*ref.axes, "humour")})
        store.put(PreferenceProfile(user_id=CAROL, weights={"humour": 1.0}, reward_model=odd))
        runtime = PADRuntime.from_loaded(loaded)
        llm = PADChatModel(runtime=runtime, reward_model=reward_model_dir, profile_store=store)
        options = {"max_tokens_limit": 8, "max_request_bytes": 200_000, "batch_window": 0.0}
        client = TestClient(create_app(ServerSettings(**{**options, **settings}), llm=llm))
        client.__enter__()
        client.store = store  # type: ignore[attr-defined]
        opened.append((client, runtime))
        return client

    yield make
    for client, runtime in opened:
        client.__exit__(None, None, None)
        runtime.close()


def body(**extra):
    return {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], **extra}


def post(client, payload, **extra):
    return client.post("/v1/chat/completions", json={**payload, **extra})


def raw(client, text: str):
    return client.post(
        "/v1/chat/completions", content=text.encode(), headers={"content-type": "application/json"}
    )


def final_frame(response):
    lines = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return json.loads(lines[-2])


# ---------------------------------------------------------------------- clear errors


def assert_400(response, *words, param=None):
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    for word in words:
        assert word in error["message"], error["message"]
    if param is not None:
        assert error["param"] == param
    assert "Traceback" not in response.text


def test_deep_json_is_a_400_without_a_traceback(make_client):
    client = make_client()
    just_over = (
        '{"messages": [{"role": "user", "content": "hi"}], "x": '
        + ("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
        + "}"
    )
    assert_400(raw(client, just_over), f"deeper than {MAX_JSON_DEPTH}")
    recursion = "[" * 50_000 + "]" * 50_000  # past Python's own recursion limit
    assert_400(raw(client, recursion), "deeper than")
    fine = '{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "x": [[[1]]]}'
    assert raw(client, fine).status_code == 200


def test_text_part_without_text_names_the_part(make_client):
    client = make_client()
    parts = body(messages=[{"role": "user", "content": [{"type": "text"}]}], max_tokens=2)
    assert_400(post(client, parts), '"text": "..."', param="messages[0].content[0].text")
    image = body(messages=[{"role": "user", "content": [{"type": "image_url"}]}])
    assert_400(post(client, image), "only text parts", "'image_url'")


@pytest.mark.parametrize(
    ("tool_calls", "words"),
    [
        ([None], "messages[0].tool_calls[0]: a tool call is expected"),
        ("add", "messages[0].tool_calls: a list of tool calls is expected"),
        ([{"function": {"name": "add", "arguments": "[1]"}}], "a JSON object string"),
        ([{"function": {"name": "add", "arguments": "{"}}], "a JSON object string"),
        ([{"id": 5, "function": {"name": "add", "arguments": "{}"}}], ".id: a string"),
    ],
)
def test_malformed_earlier_tool_calls_are_named(make_client, tool_calls, words):
    # found by the property test: [None] was a plain-text 500
    message = {"role": "assistant", "content": "", "tool_calls": tool_calls}
    response = post(make_client(), body(), messages=[message])
    assert_400(response, words)


def test_a_lone_surrogate_is_named(make_client):
    client = make_client()
    text = '{"model": "tiny", "messages": [{"role": "user", "content": "a\\ud800b"}]}'
    assert_400(raw(client, text), "lone UTF-16 surrogate", "\\ud800", param="messages[0].content")
    paired = '{"model": "tiny", "messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}'
    assert raw(client, paired + "").status_code == 200


@pytest.mark.parametrize(
    ("fragment", "param", "words"),
    [
        ('"temperature": NaN', "temperature", ["finite number", "from 0 to 2", "got nan"]),
        ('"temperature": Infinity', "temperature", ["finite number"]),
        ('"temperature": "hot"', "temperature", ["valid number", "from 0 to 2", "'hot'"]),
        ('"temperature": "0.5"', "temperature", ["valid number"]),
        ('"temperature": true', "temperature", ["valid number"]),
        ('"seed": "5"', "seed", ["valid integer", "an integer from"]),
        ('"seed": 18446744073709551616', "seed", ["less than or equal", "an integer from"]),
        ('"max_tokens": "4"', "max_tokens", ["valid integer"]),
        ('"top_p": NaN', "top_p", ["finite number"]),
        ('"pad": {"beta": 1e308, "weights": {"expertise": 1}}', "pad.beta", ["less than"]),
        ('"pad": {"beta": NaN, "weights": {"expertise": 1}}', "pad.beta", ["finite"]),
        ('"pad": {"weights": 5}', "pad.weights", ["{axis: strength}", "got 5"]),
        ('"pad": {"colour": 1}', "pad.colour", ["unknown parameter", "return_rewards"]),
        ('"messages": []', "messages", ["at least 1", "non-empty list"]),
        ('"stop": 3', "stop", ["one stop sequence"]),
    ],
)
def test_bad_parameters_name_the_parameter_and_the_form(make_client, fragment, param, words):
    client = make_client()
    response = raw(client, '{"messages": [{"role": "user", "content": "hi"}], ' + fragment + "}")
    assert_400(response, param, *words, param=param)


@pytest.mark.parametrize(
    ("weights", "words"),
    [
        ({"expertise": None}, ["weights['expertise'] must be a number"]),
        ({"expertise": "abc"}, ["must be a number"]),
        ([1], ["3 axes"]),
    ],
)
def test_bad_weights_are_named_by_the_library_check(make_client, weights, words):
    assert_400(post(make_client(), body(pad={"weights": weights})), *words)


# ---------------------------------------------------------------------- what a response reveals


def test_single_tenant_shows_everything(make_client):
    client = make_client()
    matched = post(client, body(max_tokens=2, pad={"preference": ANA_TEXT})).json()
    assert ANA in [m["user_id"] for m in matched["pad"]["profile"]["matches"]]
    by_user = post(client, body(max_tokens=2, user=ANA)).json()
    assert by_user["pad"]["profile"]["user_id"] == ANA
    assert by_user["pad"]["strengths"] == ANA_WEIGHTS
    assert post(client, body(pad={"user_id": "nobody"})).status_code == 404
    # profiles it cannot use are named errors (the multi-user server hides both)
    assert BOB in post(client, body(user=BOB)).json()["error"]["message"]
    assert CAROL in post(client, body(user=CAROL)).json()["error"]["message"]


def test_multi_user_matches_name_only_anchors(make_client):
    client = make_client(multi_user=True)
    for stream in (False, True):
        response = post(client, body(max_tokens=3, stream=stream, pad={"preference": ANA_TEXT}))
        assert response.status_code == 200
        assert ANA not in response.text and BOB not in response.text
        profile = (final_frame(response) if stream else response.json())["pad"]["profile"]
        assert all(m["user_id"].startswith("anchor:") for m in profile["matches"])
        assert all(u.startswith("anchor:") for u in profile["used"])


def no_profile_data(response) -> None:
    assert response.status_code == 200, response.text
    text = response.text
    for leak in (ANA, BOB, CAROL, "version", "reward_model_id", "2.5", "-1.25", "0.75", "weights"):
        assert leak not in text, leak


def test_multi_user_answers_for_a_user_show_no_profile_data(make_client):
    client = make_client(multi_user=True)
    answers = {}
    for who in (ANA, BOB, CAROL, "nobody"):
        for field in ("user", "pad.user_id"):
            extra = {"user": who} if field == "user" else {"pad": {"user_id": who}}
            response = post(client, body(max_tokens=6, **extra))
            no_profile_data(response)
            assert response.json()["pad"] == WITHHELD
            answers[who, field] = response.json()["choices"]
            streamed = post(client, body(max_tokens=6, stream=True, **extra))
            no_profile_data(streamed)
            assert final_frame(streamed)["pad"] == WITHHELD
    # an unusable profile (another reward model) answers exactly like a missing one
    assert answers[BOB, "user"] == answers["nobody", "user"] == answers["nobody", "pad.user_id"]
    assert answers[BOB, "pad.user_id"] == answers["nobody", "pad.user_id"]
    assert answers[CAROL, "pad.user_id"] == answers["nobody", "pad.user_id"]


def test_multi_user_unknown_user_falls_back_to_the_preference(make_client):
    client = make_client(multi_user=True)
    asked = post(client, body(max_tokens=6, pad={"user_id": "nobody", "preference": ANA_TEXT}))
    no_profile_data(asked)
    assert asked.json()["pad"] == WITHHELD


def test_multi_user_refuses_per_token_rewards_for_a_named_user(make_client):
    client = make_client(multi_user=True)
    for who in (ANA, "nobody"):
        refused = post(client, body(pad={"user_id": who, "return_rewards": True}))
        assert_400(refused, "return_rewards", param="pad.return_rewards")
    own = post(client, body(max_tokens=2, pad={"weights": ANA_WEIGHTS, "return_rewards": True}))
    assert own.status_code == 200 and own.json()["pad"]["strengths"] == ANA_WEIGHTS


def test_multi_user_refuses_unknown_user_error():
    with pytest.raises(ValueError, match="fallback"):
        create_app(ServerSettings(multi_user=True, unknown_user="error"), llm=PADChatModel())


# ---------------------------------------------------------------------- /health


def test_health_reports_the_store_and_caches_the_check(make_client, monkeypatch):
    client = make_client()
    first = client.get("/health").json()
    assert first["status"] == "ok" and first["store"]["status"] == "ok"
    assert first["store"]["findings"] == []

    calls = []

    def damaged():
        calls.append(1)
        return [f"{ANA!r}: history versions [] do not run 1..1"]

    monkeypatch.setattr(client.store, "health", None)  # the check_integrity() path
    monkeypatch.setattr(client.store, "check_integrity", damaged)
    health = client.app.state.pad.store_health
    health.checked = None  # stale: the next /health refreshes in the background
    client.get("/health")
    for _ in range(50):
        if health.report["status"] != "ok":
            break
        asyncio.run(asyncio.sleep(0.02))
    for _ in range(5):
        report = client.get("/health").json()
    assert report["status"] == "degraded" and report["store"]["status"] == "damaged"
    assert report["store"]["findings"] == [f"{ANA!r}: history versions [] do not run 1..1"]
    assert len(calls) == 1  # cached: /health stays cheap


def test_health_of_a_store_that_raises_and_of_a_multi_user_server(make_client, monkeypatch):
    client = make_client(multi_user=True)

    def broken():
        raise RuntimeError(f"database disk image is malformed near {ANA}")

    monkeypatch.setattr(client.store, "health", None)  # the check_integrity() path
    monkeypatch.setattr(client.store, "check_integrity", broken)
    client.app.state.pad.store_health.check()
    report = client.get("/health").json()
    assert report["status"] == "degraded"
    assert report["store"] == {
        "status": "error",
        "error": "RuntimeError",
        "checked_seconds_ago": report["store"]["checked_seconds_ago"],
    }
    monkeypatch.setattr(client.store, "check_integrity", lambda: [f"{ANA}: bad"])
    client.app.state.pad.store_health.check()
    assert client.get("/health").json()["store"]["findings"] == 1
    monkeypatch.setattr(  # a store with health(): its findings, counted for a multi-user server
        client.store, "health", lambda: {"ok": False, "findings": ["x", "y"]}
    )
    client.app.state.pad.store_health.check()
    assert client.get("/health").json()["store"]["findings"] == 2


# ---------------------------------------------------------------------- the disconnect watch


class _Request:
    """Enough of Starlette's Request: a client that hangs up after ``after`` checks."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.checks = 0

    async def is_disconnected(self) -> bool:
        self.checks += 1
        return self.checks > self.after


def test_a_client_that_hangs_up_cancels_the_work():
    cancelled = []

    async def decoding() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "never"

    async def quick() -> str:
        return "answer"

    async def main() -> tuple[str | None, str | None]:
        gone = await unless_disconnected(_Request(after=2), decoding(), poll=0.01)  # type: ignore[arg-type]
        here = await unless_disconnected(_Request(after=99), quick(), poll=0.01)  # type: ignore[arg-type]
        return gone, here

    assert asyncio.run(main()) == (None, "answer")
    assert cancelled == [True]


# ---------------------------------------------------------------------- the queue


def test_a_request_queued_too_long_is_a_503_with_retry_after(tiny_model, byte_tokenizer):
    """Behind a full token budget a request is refused at ``queue_timeout`` with 503,
    while the request holding the budget is answered: nobody waits into a 504."""
    import threading

    from .test_scheduler import _SlowModel

    slow = LoadedModel(
        name="tiny",
        location="tiny-slow",
        model=_SlowModel(tiny_model, 0.1),
        tokenizer=byte_tokenizer,
        eos_token_ids=frozenset({EOS_ID}),
        context_length=128,
    )
    runtime = PADRuntime.from_loaded(slow, token_budget=40, queue_timeout=0.5, max_waves=4)
    llm = PADChatModel(runtime=runtime, reward_model=None)
    settings = ServerSettings(max_tokens_limit=32, batch_window=0.0, queue_timeout=0.5)
    answers: dict[str, object] = {}
    with TestClient(create_app(settings, llm=llm)) as client:
        payload = body(max_tokens=30, temperature=0)
        first = threading.Thread(target=lambda: answers.update(first=post(client, payload)))
        first.start()
        while runtime.stats()["totals"]["rows"] < 1:  # the first request holds the budget
            assert first.is_alive(), answers["first"].text  # type: ignore[attr-defined]
            threading.Event().wait(0.01)
        second = post(client, payload)
        first.join(60)
    runtime.close()
    assert second.status_code == 503, second.text
    assert second.headers["Retry-After"] == "1"
    error = second.json()["error"]
    assert error["code"] == "queue_timeout" and "queue_timeout=0.5" in error["message"]
    assert answers["first"].status_code == 200  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- the command line


def test_serve_flags():
    from langchain_pad.cli import build_parser

    args = build_parser().parse_args(["serve", "--multi-user", "--body-timeout", "3.5"])
    assert (args.multi_user, args.body_timeout) == (True, 3.5)
    defaults = build_parser().parse_args(["serve"])
    assert (defaults.multi_user, defaults.body_timeout) == (False, 10.0)


def test_serve_refuses_multi_user_with_unknown_user_error(capsys):
    from langchain_pad.cli import main

    assert main(["serve", "--multi-user", "--unknown-user", "error"]) == 2
    assert "--unknown-user" in capsys.readouterr().err
