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

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_pad.engine.grammar import GrammarError, LarkGrammar, json_rule, json_schema_error
from langchain_pad.tool_parsing import (
    CALL_CLOSE,
    CALL_OPEN,
    ParsedAnswer,
    ToolCallStream,
    new_call_id,
    parse_tool_calls,
)

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
        same = next((s for s in specs if s.name == spec.name), None)
        if same is None:
            specs.append(spec)
        elif _properties(same) != _properties(spec):
            raise ValueError(
                f"Two bound tools share the name {spec.name!r} with different parameters: "
                "names must be unique."
            )
        # the same tool given twice (a pydantic model and its JSON schema): bound once
    return specs


def _properties(spec: ToolSpec) -> Any:
    """What makes two specs the same tool: their parameters, titles and docs aside."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ("title", "description")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(spec.parameters)


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
