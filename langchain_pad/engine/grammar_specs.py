"""Grammar specs: what a row's output must look like, before any tokenizer is involved.

JSON schema (tightened for a small model), regex and Lark texts, each a small frozen
value that says how to write its llguidance grammar. Separate from the per-row state
(``engine.grammar``) so that bind-time checks (``json_schema_error``) need no tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "COMPACT_JSON",
    "GrammarError",
    "GrammarSpec",
    "JSONSchemaGrammar",
    "LarkGrammar",
    "RegexGrammar",
    "json_rule",
    "json_schema_error",
    "tighten_schema",
]

COMPACT_JSON: Any = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
"""llguidance options for JSON as ``json.dumps`` writes it: ``{"a": 1, "b": 2}``.

Flexible whitespace lets a small model wander into newlines and indentation for as
long as its budget lasts; one fixed layout leaves it no such room and matches what
the model saw most in training.
"""


class GrammarError(ValueError):
    """A grammar cannot be compiled, or a token was fed that the grammar does not allow."""


# ---------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class JSONSchemaGrammar:
    """Output is one JSON value valid under ``schema`` (``{"type": "object"}``: any object)."""

    schema: Mapping[str, Any] = field(hash=False)
    compact: bool = True
    """One space after ``,`` and ``:``, no other whitespace (see :data:`COMPACT_JSON`)."""
    max_string_length: int | None = None
    close_objects: bool = False
    """Both as in :func:`tighten_schema`."""

    def describe(self) -> str:
        title = self.schema.get("title")
        return f"JSON schema {title!r}" if title else "JSON schema"

    def source(self) -> str:
        """The llguidance grammar text."""
        import llguidance

        return llguidance.LLMatcher.grammar_from_json_schema(
            tighten_schema(
                self.schema,
                max_string_length=self.max_string_length,
                close_objects=self.close_objects,
            ),
            overrides=_json_options(self.compact),
        )


@dataclass(frozen=True)
class RegexGrammar:
    """Output matches ``pattern`` in full (Rust ``regex`` syntax, no look-around)."""

    pattern: str

    def describe(self) -> str:
        return f"regex {self.pattern!r}"

    def source(self) -> str:
        import llguidance

        return llguidance.LLMatcher.grammar_from_regex(self.pattern)


@dataclass(frozen=True)
class LarkGrammar:
    """A Lark grammar (llguidance dialect: ``%json{...}`` embeds a JSON schema)."""

    text: str

    def describe(self) -> str:
        return "Lark grammar"

    def source(self) -> str:
        import llguidance

        return llguidance.LLMatcher.grammar_from_lark(self.text)


GrammarSpec = JSONSchemaGrammar | RegexGrammar | LarkGrammar


def _json_options(compact: bool) -> Any:
    return dict(COMPACT_JSON) if compact else None


MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer every JSON reader holds exactly (RFC 8259, section 6)."""
_BOUNDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum", "const"}


def tighten_schema(
    schema: Mapping[str, Any], *, max_string_length: int | None = None, close_objects: bool = False
) -> dict[str, Any]:
    """A copy of ``schema`` that leaves a small model less room to go wrong.

    ``max_string_length``: strings without a length, enum, const, pattern or format get
    ``maxLength`` and ``minLength: 1``. A grammar guarantees valid output only if the
    output ends within the token budget; a small model can repeat inside a string
    ("525252...") until the budget runs out and the JSON never closes, or write ``""``
    for an argument it was asked to fill. With it, integers without bounds get JSON's
    interoperable range, ``+-(2**53 - 1)`` (RFC 8259, section 6), so at most 16 digits:
    steered elementary, the 135M model wrote ``"age": 41121222121221212...`` until the
    budget ran out (``benchmarks/tool_calls.py``). ``close_objects``: objects with
    ``properties`` and no ``additionalProperties`` get ``additionalProperties: false``
    (JSON schema allows extra keys by default; the 135M model fills them with schema
    fragments it copies from the prompt, as LangChain's ``strict=True`` also forbids).
    """

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, Mapping):
            return node
        out = {key: walk(value) for key, value in node.items()}
        kind = out.get("type")
        kinds = kind if isinstance(kind, list) else [kind]
        free = not {"maxLength", "enum", "const", "pattern", "format"} & out.keys()
        if "string" in kinds and free and max_string_length is not None:
            out["maxLength"] = max_string_length
            out.setdefault("minLength", 1)
        if "integer" in kinds and max_string_length is not None and not _BOUNDS & out.keys():
            out["minimum"], out["maximum"] = -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER
        if close_objects and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out

    result: dict[str, Any] = walk(schema)
    return result


def json_rule(
    schema: Mapping[str, Any],
    *,
    compact: bool = True,
    max_string_length: int | None = None,
    close_objects: bool = False,
) -> str:
    """A Lark ``%json{...}`` item for ``schema``, to embed in a :class:`LarkGrammar`."""
    body = tighten_schema(schema, max_string_length=max_string_length, close_objects=close_objects)
    if compact:
        body["x-guidance"] = {**dict(body.get("x-guidance", {})), **COMPACT_JSON}
    return "%json" + json.dumps(body)  # key order matters: properties come in this order


def json_schema_error(schema: Mapping[str, Any], *, compact: bool = True) -> str | None:
    """Why ``schema`` cannot be compiled (None if it can); needs no tokenizer.

    For bind time, before any model is loaded: a tool's parameters or a structured
    output schema are checked when the user passes them, not at the first call.
    """
    import llguidance

    try:
        grammar = JSONSchemaGrammar(schema, compact).source()
    except ValueError as exc:
        return str(exc)
    return llguidance.LLMatcher.validate_grammar(grammar).strip() or None


# ---------------------------------------------------------------------------- compiler
