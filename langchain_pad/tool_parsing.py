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
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

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
    ``<tool_call>``. A call streams as ChatOpenAI's do: once ``{"name": "...",
    "arguments": {`` has been read, one chunk opens it (index, id, name, ``args="{"``),
    then each chunk adds the arguments' raw JSON text as it decodes (index only), so
    that adding the ``AIMessageChunk``s joins the pieces into the call's arguments
    (:class:`_ArgsScanner` finds where they end). A call written in another shape
    (no grammar made it, and the keys come in another order) is emitted as one chunk
    when its block closes.

    Call :meth:`finish` at the end for what is left. A call that cannot be used (cut
    off by the token budget, not JSON) must not merge into a runnable one, though
    LangChain completes partial JSON when chunks merge: a call emitted whole gets
    args that are a JSON string; a streamed one gets a last piece that no JSON
    completion can repair (a closing bracket that matches nothing), so LangChain
    reports it as an invalid tool call.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._in_call = False
        self._index = 0
        self._open: _OpenCall | None = None

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
            chunks.extend(self._pieces(self._buffer if end < 0 else self._buffer[:end]))
            if end < 0:
                break
            chunks.extend(self._close(self._buffer[:end]))
            self._buffer = self._buffer[end + len(CALL_CLOSE) :]
            self._in_call = False
        return "".join(content), _coalesce(chunks)

    def _pieces(self, body: str) -> list[ToolCallChunk]:
        """The open call's chunks that ``body`` (its text so far) makes available."""
        out: list[ToolCallChunk] = []
        if self._open is None:
            head = _CALL_HEAD.match(body)
            if head is None:
                return out
            try:
                name = json.loads(f'"{head.group(1)}"')
            except ValueError:
                return out
            self._open = _OpenCall(self._index, new_call_id(), head.end())
            self._index += 1
            out.append(
                tool_call_chunk(name=name, args="", id=self._open.id, index=self._open.index)
            )
        call = self._open
        fresh = call.scanner.feed(body[call.sent :])
        if fresh:
            call.sent += len(fresh)
            call.args += fresh
            out.append(tool_call_chunk(name=None, args=fresh, id=None, index=call.index))
        return out

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
            return "", self._close(rest, closed=False)
        return rest, []

    def _close(self, raw: str, *, closed: bool = True) -> list[ToolCallChunk]:
        """The chunks that end a call whose block is ``raw``."""
        parsed = _parse_call(raw, closed, None)
        call, self._open = self._open, None
        if call is not None:
            if parsed["type"] == "tool_call" and _loads(call.args) == parsed["args"]:
                return []  # the streamed pieces are the whole arguments
            return [
                tool_call_chunk(name=None, args=call.scanner.breaker(), id=None, index=call.index)
            ]
        index, self._index = self._index, self._index + 1
        if parsed["type"] == "tool_call":
            return [
                tool_call_chunk(
                    name=parsed["name"],
                    args=json.dumps(parsed["args"]),
                    id=parsed["id"],
                    index=index,
                )
            ]
        return [
            tool_call_chunk(
                name=parsed["name"], args=json.dumps(raw.strip()), id=parsed["id"], index=index
            )
        ]


_CALL_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*(?=\{)')
"""The start of a call as the tool-call grammar writes it, up to its arguments object."""


@dataclass
class _OpenCall:
    """A call being streamed: its index and id, and how much of its arguments went out."""

    index: int
    id: str
    sent: int
    """Characters of the block's text emitted so far (the head, then argument pieces)."""
    args: str = ""
    """The argument pieces emitted so far, joined."""
    scanner: _ArgsScanner = field(default_factory=lambda: _ArgsScanner())


class _ArgsScanner:
    """Reads a JSON object's text piece by piece and says where it ends.

    Tracks nesting, strings and escapes only (no validation: the grammar, or the
    final parse, decides whether the call is usable).
    """

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.in_string = False
        self.escaped = False
        self.done = False

    def feed(self, text: str) -> str:
        """The part of ``text`` that belongs to the arguments (all of it until they end)."""
        for position, char in enumerate(text):
            if self.done:
                return text[:position]
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif char == "\\":
                    self.escaped = True
                elif char == '"':
                    self.in_string = False
            elif char == '"':
                self.in_string = True
            elif char in "{[":
                self.stack.append("}" if char == "{" else "]")
            elif char in "}]" and self.stack:
                self.stack.pop()
                self.done = not self.stack
        return text

    def breaker(self) -> str:
        """A last piece after which no JSON completion can make the arguments an object."""
        close_string = ('""' if self.escaped else '"') if self.in_string else ""
        mismatch = "}" if self.stack and self.stack[-1] == "]" else "]"
        return close_string + mismatch


def _coalesce(chunks: list[ToolCallChunk]) -> list[ToolCallChunk]:
    """One chunk per call: LangChain merges chunks of one index only across messages."""
    out: list[ToolCallChunk] = []
    for chunk in chunks:
        if out and out[-1]["index"] == chunk["index"]:
            last = out[-1]
            out[-1] = tool_call_chunk(
                name=last["name"] or chunk["name"],
                args=(last["args"] or "") + (chunk["args"] or ""),
                id=last["id"] or chunk["id"],
                index=last["index"],
            )
        else:
            out.append(chunk)
    return out


def _loads(text: str) -> object:
    """``text`` as JSON, or None when it is not (yet) a JSON value."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``marker``."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
