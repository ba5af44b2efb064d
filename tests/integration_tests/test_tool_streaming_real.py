"""Streamed tool calls on the real model: arguments arrive piece by piece and merge exactly.

The embedded model writes the call under the tool-call grammar (its forced parts fast-
forwarded); the stream's ``tool_call_chunks`` must open the call once (id, name) and
then grow its arguments token by token, and their sum must be the call ``invoke``
returns, for an unsteered and a steered user alike.
"""

from __future__ import annotations

import json
from typing import Literal

import pytest
from pydantic import BaseModel

from langchain_pad import PADChatModel


class GetWeather(BaseModel):
    """Get the current weather in a city."""

    city: str
    unit: Literal["celsius", "fahrenheit"]


@pytest.mark.parametrize("steer", [False, True], ids=["plain", "steered"])
def test_streamed_arguments_grow_and_merge_into_the_invoked_call(steer):
    llm = PADChatModel(max_tokens=64, reward_model="default", steer_tool_calls=steer).bind_tools(
        [GetWeather], tool_choice="required"
    )
    ask = "What is the weather in Paris, in celsius?"
    kwargs = {"weights": {"expertise": -1.0}} if steer else {}
    invoked = llm.invoke(ask, **kwargs)
    chunks = list(llm.stream(ask, **kwargs))
    pieces = [c for chunk in chunks for c in chunk.tool_call_chunks]
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    print([p["args"] for p in pieces])
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [
        (c["name"], c["args"]) for c in invoked.tool_calls
    ]
    assert total.tool_calls[0]["name"] == "GetWeather"
    first, rest = pieces[0], pieces[1:]
    assert first["name"] == "GetWeather" and first["id"] == total.tool_calls[0]["id"]
    assert len(rest) >= 3 and all(p["name"] is None and p["id"] is None for p in rest)
    assert json.loads("".join(p["args"] for p in pieces)) == invoked.tool_calls[0]["args"]
    with_calls = [i for i, chunk in enumerate(chunks) if chunk.tool_call_chunks]
    assert with_calls[-1] - with_calls[0] >= 3  # spread over the stream, not one chunk
