"""Decoded text -> LangChain tool calls: whole answers and streamed chunks.

A call is a ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` block (the
Hermes format SmolLM2's Ollama template uses). A block ends at the first close marker
after which its JSON is complete, since a model may write the marker inside a string
argument. Separate from :mod:`langchain_pad.tools` (schemas, prompts, grammars), which
re-exports these names.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.messages import InvalidToolCall, ToolCall, ToolCallChunk
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk

__all__ = [
    "CALL_CLOSE",
    "CALL_OPEN",
    "ParsedAnswer",
    "ToolCallStream",
    "new_call_id",
    "parse_tool_calls",
]

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"


def new_call_id() -> str:
    """An OpenAI-style call id: ``call_`` and 24 hex digits."""
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class ParsedAnswer:
    """The model's text split into prose and tool calls."""

    content: str
    tool_calls: list[ToolCall]
    invalid_tool_calls: list[InvalidToolCall]


def _call_blocks(text: str) -> list[tuple[int, int, str, bool]]:
    """``(start, end, raw, closed)`` of each ``<tool_call>`` block in ``text``.

    A block ends at the first close marker after which its JSON is complete: a model
    may write the marker inside a string argument, which does not end the call.
    """
    blocks: list[tuple[int, int, str, bool]] = []
    position = 0
    while (start := text.find(CALL_OPEN, position)) >= 0:
        body = start + len(CALL_OPEN)
        end = _json_close(text, body)
        if end < 0:
            blocks.append((start, len(text), text[body:], False))
            break
        blocks.append((start, end + len(CALL_CLOSE), text[body:end], True))
        position = end + len(CALL_CLOSE)
    return blocks


def _json_close(text: str, body: int) -> int:
    """Index of the close marker ending the block whose JSON starts at ``body``, or -1."""
    search = body
    first = -1
    while (end := text.find(CALL_CLOSE, search)) >= 0:
        first = end if first < 0 else first
        try:
            json.loads(text[body:end])
            return end
        except ValueError:
            search = end + 1
    return first  # no complete JSON before any marker: the first marker ends it (invalid)


def _parse_call(raw: str, closed: bool, known: Sequence[str] | None) -> ToolCall | InvalidToolCall:
    """One block's text as a tool call, or an invalid one saying why."""
    raw = raw.strip()
    call_id = new_call_id()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        reason = "unterminated tool call" if not closed else f"not JSON: {exc}"
        return invalid_tool_call(name=None, args=raw, id=call_id, error=reason)
    name = data.get("name") if isinstance(data, dict) else None
    args = data.get("arguments", data.get("parameters")) if isinstance(data, dict) else None
    if isinstance(args, str):  # some models write the arguments as a JSON string
        with contextlib.suppress(ValueError):
            args = json.loads(args)
    error = None
    if not isinstance(name, str):
        error = 'the call has no string "name"'
    elif not isinstance(args, dict):
        error = 'the call has no object "arguments"'
    elif known is not None and name not in known:
        error = f"unknown tool {name!r}"
    elif not closed:
        error = "unterminated tool call"
    if error is None and isinstance(args, dict):
        return tool_call(name=str(name), args=args, id=call_id)
    args_text = json.dumps(args) if isinstance(args, dict) else raw
    label = name if isinstance(name, str) else None
    return invalid_tool_call(name=label, args=args_text, id=call_id, error=error)


def parse_tool_calls(text: str, known: Sequence[str] | None = None) -> ParsedAnswer:
    """Split decoded text into content, tool calls and calls that cannot be used.

    A block that is not JSON, has no string ``name`` or no object ``arguments``, is
    unterminated (the token budget ran out) or names a tool not in ``known`` becomes an
    ``invalid_tool_call`` carrying the raw text and the reason.
    """
    calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    blocks = _call_blocks(text)
    for _, _, raw, closed in blocks:
        parsed = _parse_call(raw, closed, known)
        if parsed["type"] == "tool_call":
            calls.append(parsed)
        else:
            invalid.append(parsed)
    if not blocks:
        return ParsedAnswer(text, calls, invalid)
    pieces, position = [], 0
    for start, end, _, _ in blocks:
        pieces.append(text[position:start])
        position = end
    pieces.append(text[position:])
    return ParsedAnswer("".join(pieces).strip(), calls, invalid)


class ToolCallStream:
    """Streaming: text deltas in, content deltas and ``tool_call_chunks`` out.

    Content is released as it comes except for a tail that could be the start of
    ``<tool_call>``; each call is emitted as one chunk (index, id, name, full args)
    when its block closes, so chunks merge into ``tool_calls`` when ``AIMessageChunk``s
    are added. Call :meth:`finish` at the end for what is left (a call that cannot be
    used comes out as a chunk whose args are a JSON string, which LangChain reports as
    an invalid tool call rather than completing it).
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._in_call = False
        self._index = 0

    def push(self, delta: str) -> tuple[str, list[ToolCallChunk]]:
        self._buffer += delta
        content: list[str] = []
        chunks: list[ToolCallChunk] = []
        while True:
            if not self._in_call:
                start = self._buffer.find(CALL_OPEN)
                if start < 0:
                    keep = _partial_suffix(self._buffer, CALL_OPEN)
                    content.append(self._buffer[: len(self._buffer) - keep])
                    self._buffer = self._buffer[len(self._buffer) - keep :]
                    break
                content.append(self._buffer[:start])
                self._buffer = self._buffer[start + len(CALL_OPEN) :]
                self._in_call = True
            end = self._close_of_call()
            if end < 0:
                break
            chunks.append(self._chunk(self._buffer[:end]))
            self._buffer = self._buffer[end + len(CALL_CLOSE) :]
            self._in_call = False
        return "".join(content), chunks

    def _close_of_call(self) -> int:
        """Where the open call's block ends: the first close marker after complete JSON.

        A model may write the marker inside a string argument (the grammar lets strings
        hold any text), so a marker that leaves the JSON unfinished is not the end yet.
        """
        start = 0
        while (end := self._buffer.find(CALL_CLOSE, start)) >= 0:
            try:
                json.loads(self._buffer[:end])
                return end
            except ValueError:
                start = end + 1
        return -1

    def finish(self) -> tuple[str, list[ToolCallChunk]]:
        rest, self._buffer = self._buffer, ""
        if self._in_call:
            self._in_call = False
            return "", [self._chunk(rest, closed=False)]
        return rest, []

    def _chunk(self, raw: str, *, closed: bool = True) -> ToolCallChunk:
        parsed = _parse_call(raw, closed, None)
        index, self._index = self._index, self._index + 1
        if parsed["type"] == "tool_call":
            return tool_call_chunk(
                name=parsed["name"], args=json.dumps(parsed["args"]), id=parsed["id"], index=index
            )
        # LangChain completes partial JSON args when chunks merge, which would turn a
        # truncated call into a runnable one; args that are a JSON string cannot be.
        return tool_call_chunk(
            name=parsed["name"], args=json.dumps(raw.strip()), id=parsed["id"], index=index
        )


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``marker``."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
