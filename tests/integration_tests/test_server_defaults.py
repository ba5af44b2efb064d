"""`langchain-pad serve` with no reward-model or profile flags: the shipped PersRM, batched.

Personalized requests (explicit weights and free text) decode in shared waves on the
server's one runtime, and a preference in words is matched to the shipped PersRM's
anchor poles although the server was given no profile store.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from ._server import running_server

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("server-defaults") / "server.log"
    with running_server("--batch-window", "0.5", "--log-level", "warning", log=log) as base:
        yield base


def test_free_text_is_matched_to_the_shipped_poles(server):
    client = openai.OpenAI(base_url=server, api_key="unused", max_retries=0, timeout=300)
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the sun?"}],
        max_tokens=8,
        temperature=0,
        extra_body={"pad": {"preference": "explain it like I'm five"}},
    )
    pad = reply.model_extra["pad"]
    assert pad["profile"]["source"] == "preference"
    assert pad["profile"]["used"][0] == "anchor:expertise:elementary"
    assert pad["weights"]["expertise"] < 0


def test_personalized_requests_are_batched_together(server):
    client = openai.AsyncOpenAI(base_url=server, api_key="unused", max_retries=0, timeout=300)
    bodies = [
        {"weights": {"expertise": 6.0}},
        {"weights": {"expertise": -6.0}},
        {"weights": {"informativeness": 4.0}},
        {"preference": "explain it like I'm five"},
    ]
    before = httpx.get(server.replace("/v1", "/v1/pad/stats")).json()

    async def ask(pad):
        return await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Explain gravity."}],
            max_tokens=8,
            temperature=0,
            extra_body={"pad": pad},
        )

    async def main():
        return await asyncio.gather(*(ask(pad) for pad in bodies))

    replies = asyncio.run(main())
    stats = httpx.get(server.replace("/v1", "/v1/pad/stats")).json()
    assert all(r.model_extra["pad"]["weights"] for r in replies)
    assert stats["decoding_threads"] == 1 and len(stats["reward_models"]) == 1
    new_waves = stats["totals"]["waves"] - before["totals"]["waves"]
    assert new_waves < len(bodies), stats  # at least two personalized rows shared a wave
    assert max(stats["wave_sizes"][-new_waves:]) >= 2
