"""What a call's ``tools`` / ``tool_choice`` / ``response_format`` do to its prompt and grammar.

The chat model and the server both describe constrained answers in OpenAI's terms
(``bind_tools`` binds ``tools`` and ``tool_choice``; ``with_structured_output`` and the
server's ``response_format`` bind a JSON schema or JSON mode). This module turns them
into the three things a call needs: the prompt turns (tools rendered the way SmolLM2's
Hermes-style template writes them, results as ``<tool_response>``), the row's grammar
(one ``<tool_call>``, or JSON under a schema), and, for tool calls, the stream parser
that turns the decoded text into ``tool_call_chunks``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

    from langchain_pad._messages import Turn
    from langchain_pad.engine.grammar import GrammarSpec
    from langchain_pad.tool_router import ToolRouter
    from langchain_pad.tools import ToolSpec

__all__ = ["Constraints", "check_response_format", "constraints_for", "string_cap"]


@dataclass
class Constraints:
    """A call's constrained-answer settings, resolved."""

    turns: list[Turn]
    grammar: GrammarSpec | None
    tool_names: list[str]
    """The bound tools' names (empty: no tools; content is plain text)."""
    calls: bool = False
    """The grammar writes a tool call (not prose, not a structured answer)."""


def string_cap(max_tokens: int, schemas: Sequence[Mapping[str, Any]] = ()) -> int:
    """Longest free string an answer's JSON may hold, so that it closes within budget.

    A grammar guarantees valid output only if the output ends before the token budget
    does. A string costs about one token per character (SmolLM2 writes digits one token
    each; characters outside ASCII cost more, words less), and about 32 tokens go to the
    call's own JSON and markers; half of the rest is shared by the free strings of
    ``schemas``, the other half left for keys, numbers and slack.
    """
    strings = max(1, sum(_free_strings(schema) for schema in schemas))
    return max(4, min(200, (max_tokens - 32) // (2 * strings)))


def _free_strings(node: Any) -> int:
    """How many string values without their own bounds a JSON schema holds."""
    if isinstance(node, list):
        return sum(_free_strings(item) for item in node)
    if not isinstance(node, Mapping):
        return 0
    bounded = {"maxLength", "enum", "const", "pattern", "format"} & node.keys()
    own = 1 if node.get("type") == "string" and not bounded else 0
    return own + sum(_free_strings(value) for value in node.values())


def check_response_format(response_format: object) -> dict[str, Any] | None:
    """The JSON schema of a ``response_format`` (``{}``: any JSON object; None: text)."""
    if response_format is None:
        return None
    if not isinstance(response_format, Mapping):
        raise ValueError(
            "response_format must be {'type': 'text' | 'json_object' | 'json_schema', ...}, "
            f"got {response_format!r}."
        )
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise ValueError(
                "response_format: {'type': 'json_schema'} needs "
                "{'json_schema': {'name': ..., 'schema': {...}}}."
            )
        from langchain_pad.engine.grammar import GrammarError, json_schema_error

        error = json_schema_error(dict(schema))
        if error:
            raise GrammarError(
                f"response_format: the JSON schema cannot be compiled into a decoding "
                f"grammar: {error}"
            )
        return dict(schema)
    raise ValueError(
        f"response_format type {kind!r} is not supported; use 'text', 'json_object' or "
        "'json_schema'."
    )


def constraints_for(
    messages: list[BaseMessage],
    *,
    tools: Sequence[Any] | None,
    tool_choice: Any,
    response_format: object,
    max_tokens: int,
    router: ToolRouter | None,
) -> Constraints:
    """Prompt turns, grammar and tool names for one call."""
    from langchain_pad._messages import to_turns

    schema = check_response_format(response_format)
    if tool_choice is not None and not tools:
        raise ValueError(
            f"tool_choice={tool_choice!r} names a tool choice, but no tools are bound: "
            "use llm.bind_tools([...], tool_choice=...)."
        )
    if not tools:
        turns = to_turns(messages)
        if schema is None:
            return Constraints(turns, None, [])
        return Constraints(_with_schema_hint(turns, schema), _json_grammar(schema, max_tokens), [])
    if schema is not None:
        raise ValueError(
            "tools and response_format together are not supported: a call is either a "
            "tool call or a structured answer; use with_structured_output(method="
            "'function_calling') to get a schema through a tool call."
        )
    from langchain_pad.tool_router import answer_grammar
    from langchain_pad.tools import add_tools_prompt, convert_tools, normalize_tool_choice

    specs: list[ToolSpec] = convert_tools(tools)
    choice = normalize_tool_choice(tool_choice, specs)
    turns = to_turns(messages, tool_format="hermes")
    if choice.mode == "none":
        return Constraints(turns, None, [s.name for s in specs])
    cap = string_cap(max_tokens, [s.parameters for s in specs])
    grammar = answer_grammar(choice, specs, messages, router, max_string_length=cap)
    if grammar is not None:
        return Constraints(add_tools_prompt(turns, specs), grammar, [s.name for s in specs], True)
    if grammar is None:
        # A prose answer: it may not open with a tag (a small model echoes the
        # <tool_response> it just read); after tool results, say what they are for.
        from langchain_pad.engine.grammar import RegexGrammar

        grammar = RegexGrammar(r"[^<\s][\s\S]*")
        turns = _after_tool_results(messages, turns)
    return Constraints(add_tools_prompt(turns, specs), grammar, [s.name for s in specs])


def _after_tool_results(messages: list[BaseMessage], turns: list[Turn]) -> list[Turn]:
    """Ask for the answer to the user's question after the tool results that end the turns.

    With the results alone in the last turn, the 135M model repeats them or describes
    the call; naming the question again makes it answer with them.
    """
    from langchain_core.messages import HumanMessage, ToolMessage

    if not messages or not isinstance(messages[-1], ToolMessage) or turns[-1]["role"] != "user":
        return turns
    question = next(
        (m.text for m in reversed(messages) if isinstance(m, HumanMessage) and m.text), ""
    )
    ask = f"Use this result to answer: {question}" if question else "Use this result to answer."
    last = turns[-1]
    return [*turns[:-1], {"role": "user", "content": f"{last['content']}\n{ask}"}]


def _json_grammar(schema: dict[str, Any], max_tokens: int) -> GrammarSpec:
    from langchain_pad.engine.grammar import JSONSchemaGrammar

    if not schema:
        return JSONSchemaGrammar({"type": "object"})
    return JSONSchemaGrammar(schema, max_string_length=string_cap(max_tokens), close_objects=True)


def _with_schema_hint(turns: list[Turn], schema: dict[str, Any]) -> list[Turn]:
    """Say what the JSON is for: the grammar fixes the keys, the model fills the values."""
    hint = (
        "Answer with one JSON object that matches this JSON schema, and nothing else:\n"
        + json.dumps(schema)
        if schema
        else "Answer with one JSON object, and nothing else."
    )
    if turns and turns[0]["role"] == "system":
        system = turns[0]["content"]
        return [{"role": "system", "content": f"{system}\n\n{hint}"}, *turns[1:]]
    return [{"role": "system", "content": hint}, *turns]
