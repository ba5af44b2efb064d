"""``with_structured_output``: the grammar that makes the answer schema-valid, and its parser.

Three methods, as LangChain names them:

- ``json_schema``: the answer is the JSON object itself, constrained by the schema;
- ``function_calling``: the answer is one ``<tool_call>`` to a tool whose parameters are
  the schema (what a model that was trained on tool calls knows best);
- ``json_mode``: any JSON object (the caller's prompt says which keys).

Constrained decoding makes every answer parse; the parser still validates (pydantic
models are built, so defaults and coercions apply) and raises
``OutputParserException`` for a truncated answer (the token budget ran out).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.exceptions import OutputParserException

from langchain_pad.engine.grammar import (
    GrammarError,
    GrammarSpec,
    JSONSchemaGrammar,
    json_schema_error,
)
from langchain_pad.tools import (
    DEFAULT_MAX_STRING_LENGTH,
    ToolSpec,
    convert_tools,
    parse_tool_calls,
    tool_call_grammar,
)

__all__ = ["Method", "StructuredOutputPlan", "structured_output_plan"]

Method = Literal["json_schema", "function_calling", "json_mode"]


@dataclass(frozen=True)
class StructuredOutputPlan:
    """What the chat model needs for one ``with_structured_output`` binding."""

    grammar: GrammarSpec
    parse: Callable[[str], Any]
    """Decoded text -> the pydantic object or dict; raises OutputParserException."""
    tool: ToolSpec | None = None
    """For ``function_calling``: the tool to render into the prompt and to call."""
    schema: Mapping[str, Any] | None = None
    """The JSON schema (None for ``json_mode``), e.g. to describe it in the prompt."""


def structured_output_plan(
    schema: Any,
    method: Method = "json_schema",
    *,
    max_string_length: int | None = DEFAULT_MAX_STRING_LENGTH,
) -> StructuredOutputPlan:
    """Grammar and parser for ``schema`` (pydantic class, TypedDict, JSON schema dict).

    ``schema`` may be None for ``json_mode`` only. A schema the grammar library cannot
    compile raises GrammarError here, at bind time. The grammar is the schema tightened
    (``engine.grammar.tighten_schema``: no undeclared keys, free strings non-empty and
    at most ``max_string_length`` characters), so every output still fits the schema
    as given, and a small model has less room to wander off or run out of budget.
    """
    if method == "json_mode" and schema is None:
        return StructuredOutputPlan(JSONSchemaGrammar({"type": "object"}), _json_parser(schema))
    if method == "json_mode":
        # a schema given with JSON mode is what the parser validates against: decoding
        # under it too makes every answer fit, not only the ones the model gets right
        method = "json_schema"
    if schema is None:
        raise ValueError(f"with_structured_output(method={method!r}) needs a schema.")
    if method == "json_schema":
        json_schema = _json_schema(schema)
        error = json_schema_error(json_schema)
        if error:
            title = json_schema.get("title", "output")
            raise GrammarError(
                f"The structured output schema {title!r} cannot be compiled into a "
                f"decoding grammar: {error}"
            )
        grammar = JSONSchemaGrammar(
            json_schema, max_string_length=max_string_length, close_objects=True
        )
        return StructuredOutputPlan(grammar, _json_parser(schema), schema=json_schema)
    if method == "function_calling":
        (tool,) = convert_tools([schema])
        return StructuredOutputPlan(
            tool_call_grammar([tool], tool.name, max_string_length=max_string_length),
            _tool_parser(schema, tool.name),
            tool=tool,
            schema=tool.parameters,
        )
    raise ValueError(
        f"Unknown structured output method {method!r}: use 'json_schema', "
        "'function_calling' or 'json_mode'."
    )


def _json_schema(schema: Any) -> dict[str, Any]:
    from langchain_core.utils.function_calling import convert_to_json_schema

    if isinstance(schema, Mapping) and "type" not in schema and "function" in schema:
        schema = schema["function"].get("parameters", {})  # an OpenAI tool dict
    if isinstance(schema, Mapping):
        return dict(schema)
    return dict(convert_to_json_schema(schema))


def _is_pydantic(schema: Any) -> bool:
    from pydantic import BaseModel
    from pydantic.v1 import BaseModel as BaseModelV1

    return isinstance(schema, type) and issubclass(schema, BaseModel | BaseModelV1)


def _build(schema: Any, data: Any, text: str) -> Any:
    if not _is_pydantic(schema):
        return data
    from pydantic import BaseModel, ValidationError
    from pydantic.v1 import ValidationError as ValidationErrorV1

    try:
        if issubclass(schema, BaseModel):
            return schema.model_validate(data)
        return schema.parse_obj(data)  # a pydantic.v1 model
    except (ValidationError, ValidationErrorV1) as exc:
        raise OutputParserException(
            f"The answer does not fit {schema.__name__}: {exc}", llm_output=text
        ) from exc


def _json_parser(schema: Any) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise OutputParserException(
                f"The answer is not complete JSON (was the token budget too small?): {exc}",
                llm_output=text,
            ) from exc
        return _build(schema, data, text)

    return parse


def _tool_parser(schema: Any, name: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        parsed = parse_tool_calls(text, known=[name])
        if not parsed.tool_calls:
            reason = (
                parsed.invalid_tool_calls[0]["error"] if parsed.invalid_tool_calls else "no call"
            )
            raise OutputParserException(f"No usable call to {name!r}: {reason}", llm_output=text)
        return _build(schema, parsed.tool_calls[0]["args"], text)

    return parse
