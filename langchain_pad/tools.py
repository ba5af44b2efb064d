"""Tool calling for a local model: schemas in, a grammar for the answer, tool calls out.

The embedded SmolLM2's own chat template has no tools branch, so tools are rendered the
way its Ollama template (the Hermes / Qwen format) does: a ``<tools>`` list in the
system prompt, calls written as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
and results fed back as ``<tool_response>`` (see :mod:`langchain_pad._messages`).

What a 135M model cannot do reliably, the grammar does: once the row is to call a tool,
its answer is constrained to exactly one well-formed call whose arguments match that
tool's schema (:func:`tool_call_grammar`). Whether to call at all under
``tool_choice="auto"`` is decided before decoding (:mod:`langchain_pad.tool_router`).

No torch, no llguidance at import time; the grammar specs are plain data.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import InvalidToolCall, ToolCall, ToolCallChunk
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk

from langchain_pad.engine.grammar import GrammarError, LarkGrammar, json_rule, json_schema_error

__all__ = [
    "CALL_CLOSE",
    "CALL_OPEN",
    "DEFAULT_MAX_STRING_LENGTH",
    "ParsedAnswer",
    "ToolCallStream",
    "ToolChoice",
    "ToolSpec",
    "add_tools_prompt",
    "auto_tool_grammar",
    "check_parameters",
    "convert_tools",
    "new_call_id",
    "normalize_tool_choice",
    "parse_tool_calls",
    "tool_call_grammar",
    "tools_system_prompt",
]

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"


@dataclass(frozen=True)
class ToolSpec:
    """One bound tool, as the model sees it (OpenAI function format)."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(hash=False)
    """JSON schema of the arguments (an object schema)."""

    def openai(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        function["parameters"] = dict(self.parameters)
        return {"type": "function", "function": function}


ToolLike = Any  # BaseTool, a function, a pydantic model, a TypedDict or an OpenAI dict


def convert_tools(tools: Sequence[ToolLike]) -> list[ToolSpec]:
    """Tool specs for ``tools``; a tool the grammar cannot express raises at bind time.

    Raises:
        ValueError: a tool cannot be converted, two tools share a name, or a
            parameter's type cannot be constrained (a :class:`GrammarError`, naming
            the tool and the parameter).
    """
    from langchain_core.utils.function_calling import convert_to_openai_tool

    specs: list[ToolSpec] = []
    for tool in tools:
        label = getattr(tool, "name", None) or getattr(tool, "__name__", None) or repr(tool)
        try:
            function = convert_to_openai_tool(tool)["function"]
        except Exception as exc:  # pydantic and LangChain raise many kinds; all mean "cannot"
            raise ValueError(f"Tool {label!r} cannot be converted to a JSON schema: {exc}") from exc
        parameters = dict(function.get("parameters") or {"type": "object", "properties": {}})
        spec = ToolSpec(str(function["name"]), str(function.get("description", "")), parameters)
        check_parameters(spec)
        specs.append(spec)
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Two bound tools share the name {duplicates[0]!r}: names must be unique.")
    return specs


def check_parameters(spec: ToolSpec) -> None:
    """Raise GrammarError naming the first parameter whose schema cannot be constrained."""
    error = json_schema_error
    if not error(_call_schema(spec)):
        return
    whole = spec.parameters
    for name, sub in dict(whole.get("properties", {})).items():
        detail = error({**whole, "properties": {name: sub}, "required": [name]})
        if detail:
            raise GrammarError(
                f"Tool {spec.name!r}: parameter {name!r} has a type the decoding grammar "
                f"cannot express ({detail}). Use JSON types (str, int, float, bool, "
                "list, dict, enums, nested models)."
            )
    raise GrammarError(f"Tool {spec.name!r}: its parameters cannot be compiled: {error(whole)}")


# ---------------------------------------------------------------------------- tool_choice


@dataclass(frozen=True)
class ToolChoice:
    """``tool_choice`` in one of three modes; ``name`` is set for a named tool."""

    mode: Literal["auto", "required", "none"]
    name: str | None = None


def normalize_tool_choice(choice: Any, specs: Sequence[ToolSpec]) -> ToolChoice:
    """Read LangChain's and OpenAI's spellings of ``tool_choice``.

    ``None``/"auto", "any"/"required"/True, "none"/False, a tool name, or
    ``{"type": "function", "function": {"name": ...}}``. A name that is no bound tool
    raises ValueError listing the bound ones.
    """
    names = [s.name for s in specs]
    if choice is None or choice == "auto":
        return ToolChoice("auto")
    if choice is False or choice == "none":
        return ToolChoice("none")
    if choice is True or choice in ("any", "required"):
        return ToolChoice("required", names[0] if len(names) == 1 else None)
    if isinstance(choice, Mapping):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else choice.get("name")
        if not isinstance(name, str):
            raise ValueError(
                f"tool_choice {dict(choice)!r} names no tool: use "
                '{"type": "function", "function": {"name": "<tool name>"}}.'
            )
        choice = name
    if isinstance(choice, str):
        if choice not in names:
            raise ValueError(
                f"tool_choice names {choice!r}, which is not a bound tool; bound: "
                f"{', '.join(names) or 'none'}."
            )
        return ToolChoice("required", choice)
    raise ValueError(
        f"tool_choice must be 'auto', 'any', 'required', 'none', a tool name or an OpenAI "
        f"function dict, not {choice!r}."
    )


# ---------------------------------------------------------------------------- the prompt


def tools_system_prompt(specs: Sequence[ToolSpec]) -> str:
    """The tools section of the system prompt, in the Hermes format SmolLM2's Ollama template
    uses."""
    listing = "\n".join(json.dumps(s.openai()) for s in specs)
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{listing}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments "
        f"within {CALL_OPEN}{CALL_CLOSE} XML tags:\n"
        f'{CALL_OPEN}\n{{"name": <function-name>, "arguments": <args-json-object>}}\n{CALL_CLOSE}'
    )


def add_tools_prompt(
    turns: list[dict[str, str]], specs: Sequence[ToolSpec]
) -> list[dict[str, str]]:
    """Turns with the tools section appended to the first system turn (one is added if none)."""
    if not specs:
        return list(turns)
    section = tools_system_prompt(specs)
    if turns and turns[0]["role"] == "system":
        system = turns[0]["content"]
        merged = f"{system}\n\n{section}" if system else section
        return [{"role": "system", "content": merged}, *turns[1:]]
    return [{"role": "system", "content": section}, *turns]


# ---------------------------------------------------------------------------- grammars


def _call_schema(spec: ToolSpec) -> dict[str, Any]:
    """The JSON object of one call to ``spec``: its name, then its arguments."""
    return {
        "type": "object",
        "properties": {"name": {"const": spec.name}, "arguments": dict(spec.parameters)},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def _call_rules(specs: Sequence[ToolSpec], max_string_length: int | None) -> str:
    if not specs:
        raise ValueError("A tool-call grammar needs at least one tool.")
    alternatives = " | ".join(f"call_{i}" for i in range(len(specs)))
    rules = [f"call: {alternatives}"]
    for i, spec in enumerate(specs):
        body = json_rule(
            _call_schema(spec), max_string_length=max_string_length, close_objects=True
        )
        rules.append(f"call_{i}: {body}")
    return "\n".join(rules)


DEFAULT_MAX_STRING_LENGTH = 200
"""Cap on argument strings a tool's schema leaves unbounded (see ``tighten_schema``)."""


def tool_call_grammar(
    specs: Sequence[ToolSpec],
    name: str | None = None,
    *,
    max_string_length: int | None = DEFAULT_MAX_STRING_LENGTH,
) -> LarkGrammar:
    """Exactly one ``<tool_call>`` to one of ``specs`` (or to the tool ``name``), then end.

    The arguments' schema is tightened (``engine.grammar.tighten_schema``): no extra
    keys, and free strings non-empty and capped at ``max_string_length`` characters, so
    that a model repeating itself inside a string still closes the call.
    """
    chosen = [s for s in specs if name is None or s.name == name]
    if name is not None and not chosen:
        raise ValueError(f"No bound tool is named {name!r}.")
    return LarkGrammar(
        f'start: "{CALL_OPEN}\\n" call "\\n{CALL_CLOSE}"\n' + _call_rules(chosen, max_string_length)
    )


def auto_tool_grammar(
    specs: Sequence[ToolSpec], *, max_string_length: int | None = DEFAULT_MAX_STRING_LENGTH
) -> LarkGrammar:
    """Either a plain answer (one that does not start with ``<``) or exactly one call.

    The model's own first token decides. The embedded 135M model puts under 3% on
    ``<`` even when a tool clearly fits, so :mod:`langchain_pad.tool_router` decides
    for it; this grammar serves models that do call tools by themselves.
    """
    return LarkGrammar(
        f'start: TEXT | "{CALL_OPEN}\\n" call "\\n{CALL_CLOSE}"\n'
        "TEXT: /[^<](.|\\n)*/\n" + _call_rules(specs, max_string_length)
    )


# ---------------------------------------------------------------------------- parsing


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
