"""Issue 17 through HTTP: one bad request among 15 innocent ones in one wave hurts none.

A real ``langchain-pad serve`` process (the embedded SmolLM2-135M, the shipped PersRM),
a real HTTP client, 16 concurrent requests, and a batch window long enough that they
share one wave (checked in ``/v1/pad/stats``). The 15 innocent answers (text, token ids, finish
reason, usage) must be identical to the same 15 requests decoded without the bad one;
the bad one gets a clear error that names its problem.

Every bad *value* a body can carry is refused before decoding now (see
``tests/unit_tests/test_request_properties.py``), so the failure inside the wave is
injected: ``_faulty_serve.py`` makes the grammar of a structured answer titled
``"poison"`` raise on the decoding thread, two tokens in. That is the path a real
per-row failure takes (a grammar, a sampler, a reward model that breaks on one row).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from ._faulty_serve import FAULT, POISON
from ._server import running_server

pytestmark = pytest.mark.slow

LAUNCHER = Path(__file__).with_name("_faulty_serve.py")
PROMPTS = [f"Name a fact about the number {i}." for i in range(15)]


def innocent(i: int) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": PROMPTS[i]}],
        "max_tokens": 12,
        "temperature": 0,
        "pad": {"weights": {"expertise": 1.0}, "return_rewards": True},
    }


BAD: dict[str, Any] = {
    "messages": [{"role": "user", "content": "Name a fact about the number 99."}],
    "max_tokens": 12,
    "temperature": 0,
    "pad": {"weights": {"expertise": 1.0}},
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": POISON,
            "schema": {
                "title": POISON,
                "type": "object",
                "properties": {"fact": {"type": "string"}},
                "required": ["fact"],
            },
        },
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("isolation-server")
    args = ("--batch-window", "3", "--max-batch-size", "32", "--log-level", "warning")
    with running_server(*args, log=tmp / "server.log", launcher=LAUNCHER) as base_url:
        yield base_url


async def _post_all(server: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=600) as client:
        return list(
            await asyncio.gather(
                *(client.post(f"{server}/chat/completions", json=b) for b in bodies)
            )
        )


def _wave_sizes(server: str) -> list[int]:
    sizes: list[int] = httpx.get(f"{server}/pad/stats", timeout=30).json()["wave_sizes"]
    return sizes


def _answer(response: httpx.Response) -> dict[str, Any]:
    """What must not change at all: the text, the tokens, why it ended, the usage."""
    assert response.status_code == 200, response.text
    body = response.json()
    tokens = body["pad"]["tokens"]
    return {"choices": body["choices"], "usage": body["usage"], "ids": tokens["token_ids"]}


def _floats(response: httpx.Response) -> list[float | None]:
    """The per-token numbers: base log-probs and PAD rewards (None: a gated step)."""
    tokens = response.json()["pad"]["tokens"]
    return [*tokens["token_logprobs"], *tokens["reward"]]


def _largest_gap(a: list[httpx.Response], b: list[httpx.Response]) -> float:
    return max(
        _gap(x, y)
        for ra, rb in zip(a, b, strict=True)
        for x, y in zip(_floats(ra), _floats(rb), strict=True)
    )


def _gap(x: float | None, y: float | None) -> float:
    """Both gated: no gap; one gated and not the other: as far apart as can be."""
    if x is None or y is None:
        return 0.0 if x is y else float("inf")
    return abs(x - y)


def _twin(title: str) -> dict[str, Any]:
    schema = {**BAD["response_format"]["json_schema"]["schema"], "title": title}
    return {
        **BAD,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": title, "schema": schema},
        },
    }


def test_one_bad_request_among_fifteen_innocent_ones_hurts_none_through_http(server):
    alone = asyncio.run(_post_all(server, [innocent(i) for i in range(15)]))
    assert _wave_sizes(server)[-1] == 15, "the 15 innocent requests did not share a wave"
    expected = [_answer(r) for r in alone]
    assert all(a["ids"] for a in expected)

    def beside(extra: dict[str, Any]) -> tuple[httpx.Response, list[httpx.Response]]:
        bodies = [*map(innocent, range(8)), extra, *map(innocent, range(8, 15))]
        answers = asyncio.run(_post_all(server, bodies))
        assert _wave_sizes(server)[-1] == 16, "the 16th request did not share the others' wave"
        return answers.pop(8), answers

    bad, mixed = beside(BAD)
    assert 400 <= bad.status_code < 600
    error = bad.json()["error"]
    assert FAULT in error["message"], error
    assert "Traceback" not in bad.text
    same = sum(_answer(r) == e for r, e in zip(mixed, expected, strict=True))
    assert same == 15, f"{15 - same} of 15 innocent answers changed beside the bad one"

    # Text, tokens, finish and usage are identical (above). The per-token floats (base
    # log-probs, rewards) move in the sixth decimal whenever the batch's make-up changes
    # (a row leaving early, a grammar row fed its forced tokens): matrix products of
    # other shapes round differently. A healthy row that leaves the wave as early is the
    # control: beside the failing row the floats move no more than beside it, far below
    # what could flip a token (7e-06 and 5e-06 measured).
    finishes_early, control = beside({**_twin("healthy"), "max_tokens": 2})
    assert finishes_early.status_code == 200, finishes_early.text
    assert [_answer(r) for r in control] == expected
    control_gap, gap = _largest_gap(control, alone), _largest_gap(mixed, alone)
    print(f"largest per-token float gap: {gap:.3g} beside the bad row, {control_gap:.3g} control")
    assert control_gap < 1e-4 and gap < 1e-4

    # and the server goes on serving
    again = asyncio.run(_post_all(server, [innocent(0)]))
    assert _answer(again[0]) == expected[0]
