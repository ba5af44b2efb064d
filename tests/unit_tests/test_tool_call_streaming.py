"""Tool-call arguments streamed piece by piece, merging into exactly the parsed calls.

The decoded text arrives in small pieces (as tokens do); the chunks must look like
ChatOpenAI's (first one: index, id, name and the arguments' first characters; then
argument fragments, index only) and add
up, as ``AIMessageChunk``s, to what :func:`parse_tool_calls` reads from the whole text.
The server's wire form of the same chunks is checked at the end.
"""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessageChunk

from langchain_pad.tools import ToolCallStream, parse_tool_calls

ADD = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": [2, {"c": "}"}]}}\n</tool_call>'
TRICKY = (
    '<tool_call>\n{"name": "shout", "arguments": {"text": "a \\"quoted\\" </tool_call> {"}}'
    "\n</tool_call>"
)


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def stream(parts: list[str]) -> list[AIMessageChunk]:
    parser = ToolCallStream()
    out = []
    for part in parts:
        content, calls = parser.push(part)
        out.append(AIMessageChunk(content=content, tool_call_chunks=calls))
    content, calls = parser.finish()
    out.append(AIMessageChunk(content=content, tool_call_chunks=calls))
    return out


def merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


@pytest.mark.parametrize("size", [1, 2, 5])
@pytest.mark.parametrize("text", [ADD, TRICKY, "Sure: " + ADD + " and " + TRICKY])
def test_arguments_grow_piece_by_piece_and_merge_into_the_parsed_calls(text, size):
    chunks = stream(pieces(text, size))
    calls = [c for chunk in chunks for c in chunk.tool_call_chunks]
    expected = parse_tool_calls(text)
    total = merged(chunks)
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [
        (c["name"], c["args"]) for c in expected.tool_calls
    ]
    assert total.invalid_tool_calls == []
    assert total.content == text[: text.find("<tool_call>")] + (" and " if " and " in text else "")
    for index, call in enumerate(expected.tool_calls):
        own = [c for c in calls if c["index"] == index]
        first, rest = own[0], own[1:]
        assert first["name"] == call["name"] and first["id"]
        assert len(rest) > 1 and all(c["name"] is None and c["id"] is None for c in rest)
        assert json.loads("".join(c["args"] for c in own)) == call["args"]
        assert total.tool_calls[index]["id"] == first["id"]


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>\n{"name": "add", "arguments": {"a": 1',  # budget ran out
        '<tool_call>\n{"name": "add", "arguments": {"a": "x\\',  # inside an escape
        '<tool_call>\n{"name": "add", "arguments": {"a": [1, 2',  # inside a list
        '<tool_call>\n{"name": "add", "arguments": {"a": 1}}}\n</tool_call>',  # not JSON
    ],
)
def test_a_call_that_cannot_be_used_stays_invalid_after_merging(text):
    for size in (1, 3, len(text)):
        total = merged(stream(pieces(text, size)))
        assert total.tool_calls == [], (size, total.tool_calls)
        assert len(total.invalid_tool_calls) == 1
        assert total.invalid_tool_calls[0]["name"] == "add"


def test_a_call_in_another_shape_arrives_whole_when_it_closes():
    text = '<tool_call>{"arguments": {"a": 1}, "name": "add"}</tool_call>'
    chunks = stream(pieces(text, 2))
    with_calls = [c for c in chunks if c.tool_call_chunks]
    assert len(with_calls) == 1
    assert [(c["name"], c["args"]) for c in merged(chunks).tool_calls] == [("add", {"a": 1})]


def test_the_servers_deltas_are_openais_and_join_into_the_whole_call():
    from langchain_pad.integrations.server_responses import _whole_calls, _wire_calls

    chunks = stream(pieces(ADD, 3))
    deltas = [d for chunk in chunks for d in _wire_calls(chunk.tool_call_chunks)]
    first, rest = deltas[0], deltas[1:]
    assert first["type"] == "function" and first["id"].startswith("call_")
    assert first["function"]["name"] == "add"
    assert rest and all(set(d) == {"index", "function"} for d in rest)
    assert all(set(d["function"]) == {"arguments"} for d in rest)
    (whole,) = _whole_calls([c for chunk in chunks for c in chunk.tool_call_chunks])
    assert whole["id"] == first["id"] and whole["function"]["name"] == "add"
    joined = "".join(d["function"]["arguments"] for d in deltas)
    assert joined == whole["function"]["arguments"]
    assert json.loads(joined) == parse_tool_calls(ADD).tool_calls[0]["args"]
