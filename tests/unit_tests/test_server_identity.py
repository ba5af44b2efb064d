"""Issue 15's server parts on a tiny model, in process: keys, limits, metrics, feedback.

The real-process halves (a keys file given to ``serve``, PostgreSQL, the real model)
are in ``tests/integration_tests/test_server_identity.py``.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from langchain_pad import PADChatModel
from langchain_pad.integrations.server import ServerSettings, create_app
from langchain_pad.integrations.server_auth import ApiKeys, check_bind
from langchain_pad.integrations.server_limits import KeyLimits
from langchain_pad.integrations.server_requests import RequestError
from langchain_pad.models import LoadedModel
from langchain_pad.profiles import InMemoryProfileStore, PreferenceProfile, reward_model_ref
from langchain_pad.profiles.testing import HashingEmbedder
from langchain_pad.runtime import PADRuntime

from .conftest import EOS_ID
from .test_reward_model import calibrate_uniform, perturbed

ANA_KEY = "ana-key-0123456789abcdef"
BOB_KEY = "bob-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
KEYS = {ANA_KEY: "ana", BOB_KEY: "bob", ADMIN_KEY: {"user_id": "ops", "admin": True}}
ANA = {"expertise": 0.5, "informativeness": -0.25, "style": 0.125}
BOB = {"expertise": -0.5, "informativeness": 0.25, "style": -0.125}


@pytest.fixture(scope="module")
def reward_model_dir(tiny_model, tmp_path_factory):
    directory = tmp_path_factory.mktemp("persrm")
    perturbed(tiny_model, scale=0.5).save(directory)
    calibrate_uniform(directory)
    return str(directory)


@pytest.fixture
def make_client(tiny_model, byte_tokenizer, reward_model_dir):
    """``make_client(**settings)``: a TestClient on the tiny model, ana and bob stored."""
    opened: list[tuple[TestClient, PADRuntime]] = []

    def make(**settings):
        loaded = LoadedModel(
            name="tiny",
            location="tiny-identity",
            model=tiny_model,
            tokenizer=byte_tokenizer,
            eos_token_ids=frozenset({EOS_ID}),
            context_length=128,
        )
        ref = reward_model_ref(reward_model_dir)
        store = InMemoryProfileStore(embedder=HashingEmbedder())
        store.put(PreferenceProfile(user_id="ana", weights=ANA, reward_model=ref))
        store.put(PreferenceProfile(user_id="bob", weights=BOB, reward_model=ref))
        runtime = PADRuntime.from_loaded(loaded)
        llm = PADChatModel(runtime=runtime, reward_model=reward_model_dir, profile_store=store)
        options = {"max_tokens_limit": 8, "batch_window": 0.0, "api_keys": KEYS}
        client = TestClient(create_app(ServerSettings(**{**options, **settings}), llm=llm))
        client.__enter__()
        client.store = store  # type: ignore[attr-defined]
        opened.append((client, runtime))
        return client

    yield make
    for client, runtime in opened:
        client.__exit__(None, None, None)
        runtime.close()


def chat(client, key=None, **extra):
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    payload = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, **extra}
    return client.post("/v1/chat/completions", json=payload, headers=headers)


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


# ---------------------------------------------------------------------- the keys file


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "not valid JSON at line 1"),
        ("[]", "non-empty JSON object"),
        ("{}", "non-empty JSON object"),
        ('{"short": "ana"}', "entry 1: a key must be at least 16"),
        ('{"a key with spaces 0123": "ana"}', "printable ASCII"),
        ('{"k-0123456789abcdef": 7}', "entry 1: expected a user id string"),
        ('{"k-0123456789abcdef": {"admin": true}}', 'needs "user_id"'),
        ('{"k-0123456789abcdef": {"user_id": "a", "admin": "yes"}}', '"admin" must be'),
        ('{"k-0123456789abcdef": {"user_id": "a", "role": "x"}}', "unknown field(s) ['role']"),
        ('{"k-0123456789abcdef": "anchor:expertise:expert"}', "anchor profile"),
        ('{"k-0123456789abcdef": ""}', "1 to 256 characters"),
    ],
)
def test_a_malformed_keys_file_names_the_file_and_the_problem(tmp_path, content, words):
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(ValueError) as raised:
        ApiKeys.load(path)
    message = str(raised.value)
    assert str(path) in message and words in message, message
    assert "0123456789abcdef" not in message  # no key is ever repeated


def test_a_repeated_key_and_a_missing_file(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text('{"k-0123456789abcdef": "a", "k-0123456789abcdef": "b"}')
    with pytest.raises(ValueError, match="entry 2 repeats an earlier key") as raised:
        ApiKeys.load(path)  # json alone would keep "b" and drop "a" silently
    assert "0123456789abcdef" not in str(raised.value).replace(str(path), "")
    with pytest.raises(ValueError, match="cannot be read"):
        ApiKeys.load(tmp_path / "missing.json")


def test_the_serve_command_refuses_a_bad_keys_file_before_loading_a_model(tmp_path, capsys):
    from langchain_pad.cli import main

    path = tmp_path / "keys.json"
    path.write_text('{"abc": "ana"}')
    assert main(["serve", "--api-keys", str(path), "--reward-model", "none"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "at least 16" in err and "abc" not in err.replace(str(path), "")


def test_no_keys_means_loopback_only():
    check_bind("127.0.0.1", keyed=False, allow_unauthenticated_remote=False)
    check_bind("::1", keyed=False, allow_unauthenticated_remote=False)
    check_bind("localhost", keyed=False, allow_unauthenticated_remote=False)
    with pytest.raises(ValueError, match="--allow-unauthenticated-remote"):
        check_bind("0.0.0.0", keyed=False, allow_unauthenticated_remote=False)
    check_bind("0.0.0.0", keyed=True, allow_unauthenticated_remote=False)
    check_bind("0.0.0.0", keyed=False, allow_unauthenticated_remote=True)


def test_the_serve_command_refuses_a_remote_host_without_keys(capsys):
    from langchain_pad.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--reward-model", "none"]) == 2
    assert "--api-keys" in capsys.readouterr().err


# ---------------------------------------------------------------------- who may call


def test_no_key_or_an_unknown_key_is_401_everywhere_but_health_and_metrics(make_client):
    client = make_client()
    assert client.get("/health").status_code == 200
    assert client.get("/metrics").status_code == 200
    for headers in ({}, bearer("wrong-key-0123456789abcdef"), {"Authorization": ANA_KEY}):
        for method, path in (
            ("GET", "/v1/models"),
            ("GET", "/v1/pad/stats"),
            ("GET", "/v1/pad/profile"),
            ("POST", "/v1/pad/feedback"),
            ("POST", "/v1/chat/completions"),
        ):
            response = client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "0123456789abcdef" not in response.text
            assert response.json()["error"]["code"] == "invalid_api_key"
    assert client.get("/v1/models", headers=bearer(ANA_KEY)).status_code == 200


def test_a_key_answers_as_its_user_and_may_not_name_another(make_client):
    client = make_client()
    own = chat(client, ANA_KEY)
    assert own.status_code == 200, own.text
    profile = own.json()["pad"]["profile"]
    assert (profile["user_id"], profile["source"]) == ("ana", "user_id")
    assert own.json()["pad"]["strengths"] == ANA  # the caller's own data is shown
    named_self = chat(client, ANA_KEY, user="ana", pad={"return_rewards": True})
    assert named_self.status_code == 200
    assert named_self.json()["choices"] == own.json()["choices"]
    for extra in ({"user": "bob"}, {"pad": {"user_id": "bob"}}, {"pad": {"user_id": "nobody"}}):
        refused = chat(client, ANA_KEY, **extra)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden_user"
    as_bob = chat(client, BOB_KEY).json()
    assert as_bob["pad"]["profile"]["user_id"] == "bob"
    assert as_bob["pad"]["strengths"] == BOB


def test_an_admin_may_name_any_user_and_sees_everything(make_client):
    client = make_client()
    ana = chat(client, ANA_KEY).json()
    by_admin = chat(client, ADMIN_KEY, user="ana").json()
    assert by_admin["choices"] == ana["choices"]
    assert by_admin["pad"]["profile"]["user_id"] == "ana"
    missing = chat(client, ADMIN_KEY, pad={"user_id": "nobody"})
    assert missing.status_code == 404  # an admin may learn which ids exist
    profile = client.get("/v1/pad/profile", params={"user": "bob"}, headers=bearer(ADMIN_KEY))
    assert profile.status_code == 200 and profile.json()["weights"] == BOB
    forbidden = client.get("/v1/pad/profile", params={"user": "bob"}, headers=bearer(ANA_KEY))
    assert forbidden.status_code == 403


# ---------------------------------------------------------------------- learning over HTTP


def test_feedback_moves_the_callers_profile_and_the_next_answer_uses_it(make_client):
    client = make_client()
    before = client.get("/v1/pad/profile", headers=bearer(ANA_KEY)).json()
    assert (before["user_id"], before["weights"]) == ("ana", ANA)
    pair = {"prompt": "Explain DNS.", "chosen": "Names to numbers.", "rejected": "Well, so, um."}
    learned = client.post("/v1/pad/feedback", json=pair, headers=bearer(ANA_KEY))
    assert learned.status_code == 200, learned.text
    after = learned.json()
    assert after["version"] == before["version"] + 1 == after["previous_version"] + 1
    assert after["feedback_count"] == before["feedback_count"] + 1
    assert after["weights"] != before["weights"]
    assert client.get("/v1/pad/profile", headers=bearer(ANA_KEY)).json() == {
        k: v for k, v in after.items() if k != "previous_version"
    }
    answer = chat(client, ANA_KEY).json()["pad"]
    assert answer["profile"]["version"] == after["version"]
    assert answer["strengths"] == after["weights"]
    assert client.store.get("bob").version == 1  # nobody else's profile moved


def test_a_new_user_gets_a_profile_from_their_first_feedback(make_client):
    client = make_client(api_keys={**KEYS, "cy-key-0123456789abcdef": "cy"})
    headers = bearer("cy-key-0123456789abcdef")
    assert client.get("/v1/pad/profile", headers=headers).status_code == 404
    pair = {"prompt": "Explain DNS.", "chosen": "Names to numbers.", "rejected": "Well, so."}
    created = client.post("/v1/pad/feedback", json=pair, headers=headers).json()
    assert (created["user_id"], created["version"], created["previous_version"]) == ("cy", 1, 0)


@pytest.mark.parametrize(
    ("payload", "status", "words"),
    [
        ({"prompt": "q", "chosen": "a"}, 400, "rejected: Field required"),
        ({"prompt": "q", "chosen": "a", "rejected": ""}, 400, "rejected"),
        ({"prompt": "q", "chosen": "a", "rejected": "b", "colour": 1}, 400, "colour"),
        ({"prompt": "q", "chosen": 5, "rejected": "b"}, 400, "chosen"),
        ({"prompt": "q", "chosen": "same", "rejected": "same"}, 422, "no preference"),
        ({"prompt": "q", "chosen": "a", "rejected": "b", "user": "bob"}, 403, "admin key"),
    ],
)
def test_bad_feedback_is_refused_with_the_reason(make_client, payload, status, words):
    client = make_client()
    response = client.post("/v1/pad/feedback", json=payload, headers=bearer(ANA_KEY))
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]
    assert client.store.get("ana").version == 1


def test_profile_routes_without_keys(make_client):
    local = make_client(api_keys=None)
    assert local.get("/v1/pad/profile").status_code == 400  # names no user
    assert local.get("/v1/pad/profile", params={"user": "bob"}).json()["weights"] == BOB
    shared = make_client(api_keys=None, multi_user=True)
    refused = shared.get("/v1/pad/profile", params={"user": "bob"})
    assert refused.status_code == 403 and "--api-keys" in refused.json()["error"]["message"]


# ---------------------------------------------------------------------- limits


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_limits_count_per_key_and_settle_what_was_not_used():
    clock = Clock()
    limits = KeyLimits(max_in_flight=2, tokens_per_minute=600, clock=clock)
    first, second = limits.admit("a"), limits.admit("a")
    with pytest.raises(RequestError) as busy:
        limits.admit("a")
    assert busy.value.status == 429 and busy.value.headers == {"Retry-After": "1"}
    other = limits.admit("b")  # another key is not affected
    first.reserve(500)
    with pytest.raises(RequestError) as spent:
        second.reserve(200)
    # 100 tokens left, 100 more needed at 10 tokens/s: 10 s
    assert spent.value.status == 429 and spent.value.headers == {"Retry-After": "10"}
    other.reserve(600)
    first.settle(300)  # used 300 of 500: 200 come back
    second.reserve(200)  # 100 + 200 refunded - 200
    second.settle(None)  # never ran: all 200 back, and its slot
    clock.now += 6  # 60 tokens refilled
    third = limits.admit("a")
    third.reserve(360)
    with pytest.raises(RequestError) as too_big:
        third.reserve(601)
    assert too_big.value.status == 400 and "600 tokens per minute" in too_big.value.message
    with pytest.raises(ValueError, match="max_in_flight"):
        KeyLimits(max_in_flight=0, tokens_per_minute=None)


def test_a_key_over_its_token_budget_gets_429_while_another_is_served(make_client):
    client = make_client(tokens_per_minute_per_key=60)  # ~ three tiny requests a minute
    statuses = [chat(client, ANA_KEY).status_code for _ in range(6)]
    assert statuses[0] == 200 and 429 in statuses, statuses
    refused = chat(client, ANA_KEY)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "tokens_per_minute_exceeded"
    assert chat(client, BOB_KEY).status_code == 200


# ---------------------------------------------------------------------- metrics


def scrape(client) -> dict[str, float]:
    text = client.get("/metrics").text
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def test_metrics_parse_and_move(make_client):
    client = make_client()
    before = scrape(client)
    route = "method=POST,route=/v1/chat/completions"
    assert chat(client, ANA_KEY).status_code == 200
    assert chat(client, ANA_KEY, stream=True).status_code == 200
    assert chat(client).status_code == 401
    after = scrape(client)
    assert after[f"pad_http_requests_total{{{route},status=200}}"] == 2
    assert after[f"pad_http_requests_total{{{route},status=401}}"] == 1
    generated = after["pad_generated_tokens_total{}"] - before["pad_generated_tokens_total{}"]
    assert generated > 0
    assert after["pad_guided_tokens_total{}"] == generated  # ana's answers are all guided
    assert 0 <= after["pad_changed_tokens_total{}"] <= generated
    assert after["pad_queue_wait_seconds_count{}"] == 2
    assert after["pad_batch_size_count{}"] >= 2
    assert after["pad_waves_total{}"] >= 2
    assert after["pad_forward_passes_total{}"] >= generated / 2
    assert after["pad_completions_in_flight{}"] == 0
    share = after["pad_changed_token_share{}"]
    assert share == pytest.approx(after["pad_changed_tokens_total{}"] / generated)


def test_two_apps_keep_their_own_counters(make_client):
    one, two = make_client(), make_client()
    assert chat(one, ANA_KEY).status_code == 200
    route = "pad_http_requests_total{method=POST,route=/v1/chat/completions,status=200}"
    assert scrape(one)[route] == 1
    assert route not in scrape(two)
    assert json.loads(two.get("/health").text)["status"] == "ok"
