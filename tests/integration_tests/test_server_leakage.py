"""Issue 17 with a real process: a ``--multi-user`` server reveals no other user's data.

Several users' profiles live in a real SQLite file; a real ``langchain-pad serve
--multi-user`` process (keyless: every client is a non-admin) answers requests that
match their preferences in words (``pad.preference``), or name them (``user``,
``pad.user_id``), streamed and not, with and without per-token rewards. Every full
response body is scanned: no user id, description or version of a stored profile, and
no stored profile's weights (as the numbers themselves, or as the ``w_p`` applied);
probing a missing id and an existing other user's id answers the same way (status and
the body's shape, the ``pad`` block exactly).

The weights are chosen so that none can appear by chance (binary fractions unlike any
anchor's ``w_p``).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from langchain_pad.models import resolve_reward_model
from langchain_pad.profiles import PreferenceProfile, SQLiteProfileStore, reward_model_ref

from ._server import running_server

pytestmark = pytest.mark.slow

USERS: dict[str, tuple[str, dict[str, float]]] = {
    "ana-7f3e": (
        "technical depth for a physicist, equations welcome, no small talk",
        {"expertise": 0.609375, "informativeness": -0.453125},
    ),
    "bob-91c2": (
        "explain it like I am five years old, with a friendly example",
        {"expertise": -0.921875, "informativeness": 0.828125},
    ),
    "carol-55d0": (
        "short bullet points for a busy surgeon, the bottom line first",
        {"expertise": 0.390625, "informativeness": -0.671875},
    ),
}
ASKED = {
    "ana-7f3e": "I am a physicist: technical depth and equations, skip the small talk",
    "bob-91c2": "explain it as if I were five, with a friendly example",
    "carol-55d0": "I'm a busy surgeon: short bullet points, bottom line first",
}
"""What another client asks for in words: close to a stored description, not the same."""
QUESTION = [{"role": "user", "content": "What is entropy?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("leakage-server")
    path = tmp / "profiles.sqlite"
    ref = reward_model_ref(resolve_reward_model("default"))
    store = SQLiteProfileStore(path, reward_model="default")
    for user_id, (description, weights) in USERS.items():
        for version in range(2):  # version 2 is the current one
            store.put(
                PreferenceProfile(
                    user_id=user_id,
                    description=description,
                    weights={k: v + version * 0.0 for k, v in weights.items()},
                    reward_model=ref,
                )
            )
    for user_id, text in ASKED.items():  # the match really uses that user's profile
        assert user_id in store.match(text).used, (user_id, store.match(text).used)
    store.close()
    args = (
        "--multi-user",
        "--profiles",
        str(path),
        "--max-tokens-limit",
        "16",
        "--batch-window",
        "0.0",
        "--log-level",
        "warning",
    )
    with running_server(*args, log=tmp / "server.log") as base_url:
        yield base_url


def _post(server: str, **extra: Any) -> httpx.Response:
    body = {"messages": QUESTION, "max_tokens": 8, "temperature": 0, **extra}
    return httpx.post(f"{server}/chat/completions", json=body, timeout=300)


def _bodies(response: httpx.Response) -> list[Any]:
    """The JSON of a response: its body, or every event of a stream."""
    if response.headers["content-type"].startswith("text/event-stream"):
        frames = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert frames[-1] == "[DONE]", response.text[-300:]
        return [json.loads(f) for f in frames[:-1]]
    return [response.json()]


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return []


def _applied_weights(bodies: list[Any]) -> list[dict[str, float]]:
    return [
        b["pad"][key]
        for b in bodies
        for key in ("weights", "strengths")
        if isinstance(b.get("pad"), dict) and key in b["pad"]
    ]


def _raw(strengths: dict[str, float]) -> dict[str, float]:
    """A user's strengths as the shipped PersRM's raw w_p (its calibration)."""
    from langchain_pad.calibration import load_calibration

    axes = list(strengths)
    vector = load_calibration("default", axes).to_raw([strengths[a] for a in axes])
    return dict(zip(axes, vector, strict=True))


def assert_reveals_nobody(response: httpx.Response, asker: str | None = None) -> None:
    assert response.status_code == 200, response.text
    text = response.text
    bodies = _bodies(response)
    assert not [b for b in bodies if "error" in b], text
    for user_id, (description, weights) in USERS.items():
        assert user_id not in text, f"{user_id} named in {text[:400]}"
        assert description not in text, f"{user_id}'s description in the response"
        raw = _raw(weights)  # the same preference as the w_p it decodes with
        for axis, value in [*weights.items(), *raw.items()]:
            found = [n for n in _numbers(bodies) if abs(n - value) < 1e-9]
            assert not found, f"{user_id}'s {axis} weight {value} in the response"
        for applied in _applied_weights(bodies):
            assert applied not in (weights, raw), f"{user_id}'s weights applied and shown"
    for leak in ("reward_model_id", "unknown_user_id"):
        assert leak not in text, f"{leak} in {text[:400]}"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("who", list(USERS))
def test_a_preference_matching_a_stored_profile_reveals_nobody(server, who, stream):
    response = _post(server, stream=stream, pad={"preference": ASKED[who]})
    assert_reveals_nobody(response)
    pad = _bodies(response)[-1].get("pad") or {}
    assert "weights" not in pad and "summary" not in pad  # they would be that user's
    named = [m["user_id"] for m in pad["profile"]["matches"]] + pad["profile"]["used"]
    assert all(u.startswith("anchor:") for u in named), named  # anchors may be named
    # per-token rewards and features would give the weights back: refused
    refused = _post(server, stream=stream, pad={"preference": ASKED[who], "return_rewards": True})
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "pad.return_rewards"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("field", ["user", "pad.user_id"])
@pytest.mark.parametrize("who", [*USERS, "nobody-0000"])
def test_naming_a_user_reveals_nothing_of_their_profile(server, who, field, stream):
    extra: dict[str, Any] = {"user": who} if field == "user" else {"pad": {"user_id": who}}
    response = _post(server, stream=stream, **extra)
    assert_reveals_nobody(response)
    if who in USERS:  # the id itself was sent by the asker: echoing it would be fine,
        assert who not in response.text  # but the server does not even do that


def _shape(value: Any) -> Any:
    """The body's structure: keys and types, not the values."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_shape(v) for v in value[:1]]
    return type(value).__name__


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("field", ["user", "pad.user_id"])
def test_probing_cannot_tell_existing_ids_from_missing_ones(server, field, stream):
    def probe(who: str) -> tuple[int, list[Any], list[Any]]:
        extra: dict[str, Any] = {"user": who} if field == "user" else {"pad": {"user_id": who}}
        response = _post(server, stream=stream, **extra)
        bodies = _bodies(response)
        pads = [b.get("pad") for b in bodies]
        return response.status_code, [_shape(b) for b in bodies], pads

    missing = probe("nobody-0000")
    for who in USERS:
        existing = probe(who)
        assert existing[0] == missing[0] == 200
        assert existing[1] == missing[1], f"{who}: the body's shape differs from a missing id's"
        assert existing[2] == missing[2], f"{who}: the pad block differs from a missing id's"
    # the same with return_rewards: refused alike for both
    extra: dict[str, Any] = {"pad": {"return_rewards": True}}
    if field == "user":
        refused = [_post(server, user=w, **extra) for w in ("nobody-0000", *USERS)]
    else:
        refused = [
            _post(server, pad={"user_id": w, "return_rewards": True})
            for w in ("nobody-0000", *USERS)
        ]
    assert {r.status_code for r in refused} == {400}
    assert len({json.dumps(r.json(), sort_keys=True) for r in refused}) == 1
