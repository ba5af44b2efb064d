"""``langchain-pad serve --replicas 2`` on a real local Ray, a real PostgreSQL, real HTTP.

One service for the module (Ray and two replicas take about a minute to start on two
cores): 16 users answered at once across both replicas, a feedback write through one
replica used by the other, one replica killed under load (``ray.kill`` of its actor),
and Ctrl-C taking it all down. Replicas are told apart by the ``x-pad-replica`` header
every response carries. The reward model is the deterministic, perturbed PersRM of the
other server tests, so each user's ``w_p`` changes the text.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

pytest.importorskip("ray.serve")
pytest.importorskip("psycopg")

from langchain_pad.integrations.postgres import PostgresProfileStore
from langchain_pad.integrations.ray_serve import REPLICA_HEADER
from langchain_pad.profiles import PreferenceProfile, reward_model_ref

from ._persrm import save_perturbed
from ._postgres import postgres_bin, throwaway_postgres
from ._server import free_port

pytestmark = pytest.mark.skipif(postgres_bin() is None, reason="no PostgreSQL with pgvector")

MODEL = "smollm2-135m-instruct"
QUESTIONS = ["What is gravity?", "Describe a cat.", "How do plants grow?", "What is music?"]
# 16 users, 16 different w_p on the perturbed PersRM's three axes
USERS = {
    f"user{i:02d}": {"expertise": e, "informativeness": inf, "style": s}
    for i, (e, inf, s) in enumerate(
        (e, inf, s)
        for e in (-0.5, 0.5)
        for inf in (-0.375, 0.375)
        for s in (-0.625, 0.0, 0.25, 0.625)
    )
}


class Service:
    def __init__(self, base: str, ray_address: str, process: subprocess.Popen[bytes], log: Path):
        self.base = base
        self.ray_address = ray_address
        self.process = process
        self.log = log


@contextmanager
def replicated_server(*args: str, log: Path, startup: float = 300.0) -> Iterator[Service]:
    """``langchain-pad serve --replicas 2 ARGS``; yields once every replica answers."""
    port = free_port()
    command = [sys.executable, "-m", "langchain_pad.cli", "serve", "--port", str(port), *args]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + startup
            while not (found := re.search(r"Ray address: (\S+)", log.read_text())):
                if process.poll() is not None:
                    raise RuntimeError(f"server exited early:\n{log.read_text()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start:\n{log.read_text()}")
                time.sleep(0.5)
            yield Service(f"http://127.0.0.1:{port}", found.group(1), process, log)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)


@pytest.fixture(scope="module")
def database():
    with throwaway_postgres() as url:
        yield url


@pytest.fixture(scope="module")
def persrm(loaded, tmp_path_factory):
    return save_perturbed(loaded, tmp_path_factory.mktemp("persrm"))


@pytest.fixture(scope="module")
def store(database, persrm):
    from langchain_pad.profiles.testing import HashingEmbedder

    store = PostgresProfileStore(database, embedder=HashingEmbedder(), reward_model=persrm)
    ref = reward_model_ref(persrm)
    for user_id, weights in USERS.items():
        store.put(PreferenceProfile(user_id=user_id, weights=weights, reward_model=ref))
    yield store
    store.close()


@pytest.fixture(scope="module")
def service(store, persrm, database, tmp_path_factory):
    log = tmp_path_factory.mktemp("ray-serve") / "serve.log"
    args = (
        *("--replicas", "2", "--replica-cpus", "1", "--replica-threads", "1"),
        *("--reward-model", persrm, "--profiles", database),
        *("--max-tokens-limit", "64", "--batch-window", "0.05", "--log-level", "warning"),
    )
    with replicated_server(*args, log=log) as running:
        yield running


def completion_body(question: str, user: str | None = None, **extra) -> dict:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 16,
        "temperature": 0,
        **extra,
    }
    if user is not None:
        body["user"] = user
    return body


async def ask(client: httpx.AsyncClient, base: str, body: dict) -> httpx.Response:
    return await client.post(f"{base}/v1/chat/completions", json=body, timeout=300)


def text_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def kill_replica(service: Service, name: str) -> None:
    """``ray.kill`` the replica's actor, from a driver of its own on the service's Ray."""
    code = (
        "import ray, sys; ray.init(address=sys.argv[1], logging_level='error'); "
        "ray.kill(ray.get_actor(sys.argv[2], namespace='serve'), no_restart=True)"
    )
    env = {**os.environ, "RAY_AUTH_MODE": "token"}  # the local Ray's token (~/.ray/auth_token)
    subprocess.run(
        [sys.executable, "-c", code, service.ray_address, name], env=env, check=True, timeout=120
    )


def test_sixteen_users_across_two_replicas_each_get_their_own_profile(service):
    """16 users at once: both replicas answer, each user as they would be answered alone."""
    requests = [(QUESTIONS[i % 4], user) for i, user in enumerate(USERS)]

    async def together():
        async with httpx.AsyncClient() as client:
            return await asyncio.gather(
                *(ask(client, service.base, completion_body(q, u)) for q, u in requests)
            )

    concurrent = asyncio.run(together())
    replicas = {r.headers[REPLICA_HEADER] for r in concurrent}
    assert len(replicas) == 2, replicas

    async def one_by_one():
        async with httpx.AsyncClient() as client:
            return [await ask(client, service.base, completion_body(q, u)) for q, u in requests]

    alone = asyncio.run(one_by_one())
    assert [text_of(r) for r in concurrent] == [text_of(r) for r in alone]
    assert len({text_of(r) for r in alone}) > 4  # the 16 profiles really answer differently
    for response, (_, user) in zip(concurrent, requests, strict=True):
        profile = response.json()["pad"]["profile"]
        assert profile["user_id"] == user


FEEDBACK = {
    "prompt": "What is gravity?",
    "chosen": "Gravity is the curvature of spacetime produced by mass and energy.",
    "rejected": "Gravity is what makes things fall down. It is cool!",
}


def test_feedback_through_one_replica_is_used_by_the_other(service, store):
    user = "user00"
    before = store.get(user).version
    with httpx.Client(base_url=service.base, timeout=300) as client:
        written = client.post("/v1/pad/feedback", json={**FEEDBACK, "user": user})
        assert written.status_code == 200, written.text
        writer = written.headers[REPLICA_HEADER]
        version = written.json()["version"]
    assert version > before
    learned = store.get(user)
    assert learned.version == version

    async def burst():
        async with httpx.AsyncClient() as client:
            body = completion_body(QUESTIONS[0], user)
            return await asyncio.gather(*(ask(client, service.base, body) for _ in range(8)))

    # the proxy spreads a burst over both replicas; find an answer from the other one
    others = []
    for _ in range(5):
        others = [r for r in asyncio.run(burst()) if r.headers[REPLICA_HEADER] != writer]
        if others:
            break
    assert others, "no request reached the replica that did not take the write"
    explicit = {"pad": {"weights": dict(learned.weights)}}
    with httpx.Client(base_url=service.base, timeout=300) as client:
        expected = text_of(
            client.post("/v1/chat/completions", json=completion_body(QUESTIONS[0], **explicit))
        )
    for response in others:
        assert response.json()["pad"]["profile"]["version"] == version
        assert text_of(response) == expected


def test_a_replica_killed_under_load(service, store):
    """Load on both replicas, one killed: answers go on, acknowledged writes all landed."""
    writers = [f"writer{i}" for i in range(4)]
    acknowledged: dict[str, list[int]] = {w: [] for w in writers}
    attempted: dict[str, int] = dict.fromkeys(writers, 0)
    outcomes: list[tuple[float, int, str, str]] = []  # (time, status, body, replica)
    killed_at: list[float] = []

    async def reader(client, i, stop):
        while not stop.is_set():
            response = await ask(client, service.base, completion_body(QUESTIONS[i % 4]))
            replica = response.headers.get(REPLICA_HEADER, "")
            outcomes.append((time.monotonic(), response.status_code, response.text, replica))

    async def writer(client, user, stop):
        n = 0
        while not stop.is_set():
            attempted[user] += 1
            pair = {**FEEDBACK, "chosen": f"{FEEDBACK['chosen']} ({n})", "user": user}
            response = await client.post(f"{service.base}/v1/pad/feedback", json=pair)
            if response.status_code == 200:
                acknowledged[user].append(response.json()["version"])
            else:  # a write the proxy lost says so, in the OpenAI error format
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "replica_lost"
            n += 1

    async def load():
        stop = asyncio.Event()
        async with httpx.AsyncClient(timeout=300) as client:
            tasks = [asyncio.create_task(reader(client, i, stop)) for i in range(6)]
            tasks += [asyncio.create_task(writer(client, w, stop)) for w in writers]
            await asyncio.sleep(6)
            victim = (await client.get(f"{service.base}/health")).headers[REPLICA_HEADER]
            await asyncio.to_thread(kill_replica, service, victim)
            killed_at.append(time.monotonic())
            await asyncio.sleep(15)
            stop.set()
            await asyncio.gather(*tasks)
            return victim

    victim = asyncio.run(load())
    # (under contention a batch can outlast the 6 s before the kill, so whether the victim
    # held requests is not asserted from finished ones; 6 readers spread over both)
    after = [o for o in outcomes if o[0] > killed_at[0]]
    assert any(o[1] == 200 for o in after), "no answer after the kill"
    # completions write nothing: the proxy re-sent those the dead replica held
    bad = [(s, b[:200]) for _, s, b, _ in outcomes if s != 200]
    assert not bad, bad
    for user in writers:
        profile = store.get(user)
        assert acknowledged[user], f"{user}: no write acknowledged"
        assert profile is not None and profile.version >= max(acknowledged[user])
        versions = {v.version for v in store.history(user)}
        assert set(acknowledged[user]) <= versions  # every acknowledged version is kept
        recorded = len(store.feedback(user))
        assert len(acknowledged[user]) <= recorded <= attempted[user]
    assert store.check_integrity() == []

    # Serve starts a replica in place of the dead one
    deadline = time.monotonic() + 180
    seen: set[str] = set()
    with httpx.Client(base_url=service.base, timeout=300) as client:
        while len(seen - {victim}) < 2 and time.monotonic() < deadline:
            seen |= {client.get("/health").headers[REPLICA_HEADER] for _ in range(4)}
            time.sleep(1)
    assert len(seen - {victim}) == 2, seen


def test_sqlite_is_refused_for_several_replicas(tmp_path):
    command = [sys.executable, "-m", "langchain_pad.cli", "serve", "--replicas", "2"]
    done = subprocess.run(
        [*command, "--profiles", str(tmp_path / "p.sqlite")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "SQLite file cannot be one store for several processes" in done.stderr
    assert not (tmp_path / "p.sqlite").exists()


def test_ctrl_c_takes_the_service_and_its_ray_down(service):
    """Last in the module: SIGINT, as a terminal's Ctrl-C sends it."""
    service.process.send_signal(signal.SIGINT)
    # 60 s ran out once in a clean-clone CI run after 18 minutes of suite on 2 cores
    # (the module alone shuts down in seconds); a real hang still fails here
    assert service.process.wait(180) == 0
    log = service.log.read_text()
    assert "shutting down" in log and log.rstrip().endswith("stopped")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{service.base}/health", timeout=5)
