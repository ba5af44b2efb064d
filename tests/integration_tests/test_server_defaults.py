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
        {"weights": {"expertise": 1.0}},
        {"weights": {"expertise": -1.0}},
        {"weights": {"informativeness": 1.0}},
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


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_tools_in_the_openai_wire_format(server):
    import json

    client = openai.OpenAI(base_url=server, api_key="unused", max_retries=0, timeout=300)
    ask = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
        "max_tokens": 64,
        "temperature": 0,
        "tools": [WEATHER],
        "tool_choice": "required",
    }
    reply = client.chat.completions.create(**ask)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and call.id
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    streamed = [c for c in client.chat.completions.create(**ask, stream=True) if c.choices]
    deltas = [d for c in streamed for d in (c.choices[0].delta.tool_calls or [])]
    # as OpenAI streams a call: id and name first, then the arguments in fragments
    assert deltas[0].id and deltas[0].function.name == "get_weather"
    assert len(deltas) > 3 and all(d.id is None and d.function.name is None for d in deltas[1:])
    assert "".join(d.function.arguments or "" for d in deltas) == call.function.arguments
    assert streamed[-1].choices[0].finish_reason == "tool_calls"
    # the result goes back as a tool message; the answer is prose
    follow = client.chat.completions.create(
        **{
            **ask,
            "tool_choice": "auto",
            "messages": [
                *ask["messages"],
                choice.message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 24 C"},
            ],
        }
    )
    assert follow.choices[0].finish_reason in ("stop", "length")
    assert follow.choices[0].message.content


def test_langchain_chat_openai_binds_tools_against_the_server(server):
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    llm = ChatOpenAI(base_url=server, api_key="unused", model=MODEL, max_tokens=64, temperature=0)
    message = llm.bind_tools([WEATHER], tool_choice="any").invoke("Weather in Rome?")
    assert message.tool_calls and message.tool_calls[0]["name"] == "get_weather"
    # ChatOpenAI's own stream: argument fragments merge into the same call
    chunks = list(llm.bind_tools([WEATHER], tool_choice="any").stream("Weather in Rome?"))
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert sum(bool(c.tool_call_chunks) for c in chunks) > 3
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [
        (c["name"], c["args"]) for c in message.tool_calls
    ]

    class City(BaseModel):
        name: str
        country: str

    city = llm.with_structured_output(City, method="json_schema").invoke(
        "Paris is the capital of France. Give the city and its country."
    )
    assert isinstance(city, City) and city.name
