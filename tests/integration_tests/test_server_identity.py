"""Issue 15 on a real server: a real keys file, a real PostgreSQL, the real model.

``langchain-pad serve --api-keys FILE --profiles postgresql://...`` runs as its own
process on loopback; the clients are the official ``openai`` package and ``httpx``.
The reward model is the deterministic perturbed PersRM of ``test_server``.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from ._persrm import save_perturbed
from ._postgres import postgres_bin, throwaway_postgres
from ._server import running_server

pytest.importorskip("openai")
pytest.importorskip("psycopg")
pytest.importorskip("prometheus_client")
if postgres_bin() is None:
    pytest.skip("no PostgreSQL with pgvector (run `make system-deps`)", allow_module_level=True)

from prometheus_client.parser import text_string_to_metric_families

from langchain_pad.integrations.postgres import PostgresProfileStore
from langchain_pad.profiles import PreferenceProfile, reward_model_ref

openai = pytest.importorskip("openai")
MODEL = "smollm2-135m-instruct"
QUESTION = "Explain what a black hole is."
ANA_KEY = "ana-5b1f0c9e7d2a4f3b8c6e"
BOB_KEY = "bob-0d4e2f7a9c1b3e5d6f8a"
ADMIN_KEY = "ops-9e8d7c6b5a4f3e2d1c0b"
ANA = {"expertise": 0.75, "style": -0.5}  # strengths: raw / 4 on the test PersRM
BOB = {"expertise": -0.75, "style": 0.5}


@pytest.fixture(scope="module")
def reward_model_dir(loaded, tmp_path_factory):
    return save_perturbed(loaded, tmp_path_factory.mktemp("persrm"))


@pytest.fixture(scope="module")
def postgres(reward_model_dir):
    with throwaway_postgres() as url:
        store = PostgresProfileStore(url, reward_model=reward_model_dir)
        ref = reward_model_ref(reward_model_dir)
        store.put(PreferenceProfile(user_id="ana", weights=ANA, reward_model=ref))
        store.put(PreferenceProfile(user_id="bob", weights=BOB, reward_model=ref))
        store.close()
        yield url


@pytest.fixture(scope="module")
def server(reward_model_dir, postgres, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("identity")
    keys = tmp / "keys.json"
    keys.write_text(
        json.dumps({ANA_KEY: "ana", BOB_KEY: "bob", ADMIN_KEY: {"user_id": "ops", "admin": True}})
    )
    log = tmp / "server.log"
    args = (
        *("--reward-model", reward_model_dir, "--profiles", postgres),
        *("--api-keys", str(keys), "--max-in-flight-per-key", "2"),
        *("--max-tokens-limit", "48", "--log-level", "info"),
    )
    with running_server(*args, log=log) as base_url:
        yield base_url
    text = log.read_text()
    for key in (ANA_KEY, BOB_KEY, ADMIN_KEY):
        assert key not in text  # a key is never logged


def client_for(server, key):
    return openai.OpenAI(base_url=server, api_key=key, max_retries=0, timeout=300)


def ask(client, max_tokens=12, **extra):
    return client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=max_tokens,
        temperature=0,
        **extra,
    )


def get(server, path, key=None, **params):
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return httpx.get(f"{server}{path}", headers=headers, params=params, timeout=300)


def test_no_key_is_401_and_a_wrong_key_too(server):
    assert httpx.get(server.removesuffix("/v1") + "/health").status_code == 200
    assert get(server, "/models").status_code == 401
    with pytest.raises(openai.AuthenticationError, match="not valid"):
        ask(client_for(server, "not-a-key-of-this-server"))


def test_a_key_cannot_read_or_use_another_users_profile(server):
    ana = client_for(server, ANA_KEY)
    with pytest.raises(openai.PermissionDeniedError, match="admin key"):
        ask(ana, user="bob")
    with pytest.raises(openai.PermissionDeniedError):
        ask(ana, extra_body={"pad": {"user_id": "bob"}})
    assert get(server, "/pad/profile", ANA_KEY, user="bob").status_code == 403
    own = ask(ana)
    assert own.model_extra["pad"]["profile"]["user_id"] == "ana"  # the key's user


def test_an_admin_can(server):
    as_bob = ask(client_for(server, BOB_KEY))
    by_admin = ask(client_for(server, ADMIN_KEY), user="bob")
    assert by_admin.choices[0].message.content == as_bob.choices[0].message.content
    assert by_admin.model_extra["pad"]["profile"]["user_id"] == "bob"
    profile = get(server, "/pad/profile", ADMIN_KEY, user="bob")
    assert profile.status_code == 200
    assert profile.json()["weights"] == as_bob.model_extra["pad"]["strengths"]


def test_feedback_moves_the_profile_and_the_next_answer_uses_it(server, postgres, reward_model_dir):
    ana = client_for(server, ANA_KEY)
    before = ask(ana).model_extra["pad"]
    answer_a = ask(ana, max_tokens=24).choices[0].message.content
    answer_b = ask(ana, max_tokens=24, extra_body={"pad": {"weights": BOB}}).choices[0]
    learned = httpx.post(
        f"{server}/pad/feedback",
        headers={"Authorization": f"Bearer {ANA_KEY}"},
        json={"prompt": QUESTION, "chosen": answer_b.message.content, "rejected": answer_a},
        timeout=300,
    )
    assert learned.status_code == 200, learned.text
    profile = learned.json()
    assert profile["version"] == before["profile"]["version"] + 1
    after = ask(ana).model_extra["pad"]
    assert after["profile"]["version"] == profile["version"]
    assert after["strengths"] == profile["weights"] != before["strengths"]
    # the acknowledged write is in PostgreSQL
    stored = PostgresProfileStore(postgres, reward_model=reward_model_dir, read_only=True)
    try:
        assert stored.get("ana").version == profile["version"]
        assert stored.feedback("ana")[-1].chosen == answer_b.message.content
        assert stored.check_integrity() == []
    finally:
        stored.close()
    assert get(server, "/pad/profile", ANA_KEY).json()["version"] == profile["version"]


def test_a_burst_beyond_a_keys_limit_is_429_while_another_key_is_served(server):
    async def one(key, max_tokens):
        async with httpx.AsyncClient(timeout=300) as client:
            return await client.post(
                f"{server}/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "model": MODEL,
                    "messages": [{"role": "user", "content": QUESTION}],
                    "max_tokens": max_tokens,
                    "temperature": 0,
                },
            )

    async def burst():
        anas = [asyncio.ensure_future(one(ANA_KEY, 48)) for _ in range(6)]
        await asyncio.sleep(0.5)  # ana's burst is in flight
        bob = await one(BOB_KEY, 8)
        return await asyncio.gather(*anas), bob

    anas, bob = asyncio.run(burst())
    statuses = sorted(r.status_code for r in anas)
    assert statuses == [200, 200, 429, 429, 429, 429], statuses
    refused = next(r for r in anas if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert "in flight" in refused.json()["error"]["message"]
    assert bob.status_code == 200, bob.text
    assert bob.json()["choices"][0]["message"]["content"]


def test_metrics_parse_and_their_counters_move(server):
    root = server.removesuffix("/v1")

    def scrape():
        families = text_string_to_metric_families(httpx.get(f"{root}/metrics").text)
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
        }

    before = scrape()
    ask(client_for(server, ANA_KEY), extra_body={"pad": {"weights": ANA}})
    assert get(server, "/models").status_code == 401
    after = scrape()
    ok = (
        "pad_http_requests_total",
        (("method", "POST"), ("route", "/v1/chat/completions"), ("status", "200")),
    )
    denied = (
        "pad_http_requests_total",
        (("method", "GET"), ("route", "/v1/models"), ("status", "401")),
    )
    assert after[ok] == before.get(ok, 0) + 1
    assert after[denied] == before.get(denied, 0) + 1
    for name in ("pad_generated_tokens_total", "pad_guided_tokens_total"):
        assert after[(name, ())] > before[(name, ())]
    assert after[("pad_queue_wait_seconds_count", ())] == (
        before[("pad_queue_wait_seconds_count", ())] + 1
    )
    assert after[("pad_batch_size_count", ())] > before.get(("pad_batch_size_count", ()), 0)
    assert after[("pad_forward_passes_total", ())] > before[("pad_forward_passes_total", ())]
    assert 0 < after[("pad_changed_token_share", ())] <= 1
