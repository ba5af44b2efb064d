from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from langchain_pad.engine.grammar import GrammarCompiler, GrammarError
from langchain_pad.tool_router import EmbeddingToolRouter, answer_grammar
from langchain_pad.tools import (
    ToolCallStream,
    ToolChoice,
    add_tools_prompt,
    auto_tool_grammar,
    convert_tools,
    normalize_tool_choice,
    parse_tool_calls,
    tool_call_grammar,
    tools_system_prompt,
)

from ._tokenizers import TINY_EOS_ID, tiny_fast_tokenizer

CALL_ID = re.compile(r"^call_[0-9a-f]{24}$")


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Weather(BaseModel):
    """Get the current weather in a city."""

    city: str = Field(description="City name")
    unit: str = "celsius"


class Lookup(TypedDict):
    """Look a word up in the glossary."""

    word: str


OPENAI_TOOL = {
    "type": "function",
    "function": {
        "name": "shout",
        "description": "Say it loud.",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
    },
}


def multiply(x: float, y: float) -> float:
    """Multiply two numbers."""
    return x * y


@pytest.fixture(scope="module")
def specs():
    return convert_tools([add, Weather, Lookup, OPENAI_TOOL, multiply])


@pytest.fixture(scope="module")
def compiler():
    return GrammarCompiler(tiny_fast_tokenizer(), 300, eos_token_ids={TINY_EOS_ID})


def test_every_tool_form_becomes_an_openai_function(specs):
    assert [s.name for s in specs] == ["add", "Weather", "Lookup", "shout", "multiply"]
    assert specs[0].parameters["properties"] == {
        "a": {"type": "integer"},
        "b": {"type": "integer"},
    }
    assert specs[1].description == "Get the current weather in a city."
    assert specs[4].openai()["function"]["parameters"]["required"] == ["x", "y"]


def test_unsupported_parameter_type_is_refused_naming_tool_and_parameter():
    @tool
    def upload(name: str, blob: bytes) -> str:
        """Upload a file."""
        return name

    with pytest.raises(GrammarError, match=r"Tool 'upload': parameter 'blob'.*binary"):
        convert_tools([upload])

    def callback(fn: Callable[[int], int]) -> int:
        """Takes a function."""
        return 0

    with pytest.raises(ValueError, match="Tool 'callback' cannot be converted"):
        convert_tools([callback])


def test_dates_and_nested_models_are_fine():
    class Event(BaseModel):
        """An event."""

        day: datetime.date
        where: Weather

    (spec,) = convert_tools([Event])
    assert spec.name == "Event"


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError, match="share the name 'add'"):
        convert_tools([add, add])


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, ToolChoice("auto")),
        ("auto", ToolChoice("auto")),
        ("none", ToolChoice("none")),
        ("any", ToolChoice("required")),
        ("required", ToolChoice("required")),
        (True, ToolChoice("required")),
        ("add", ToolChoice("required", "add")),
        ({"type": "function", "function": {"name": "shout"}}, ToolChoice("required", "shout")),
    ],
)
def test_tool_choice_spellings(specs, choice, expected):
    assert normalize_tool_choice(choice, specs) == expected


def test_required_with_one_tool_names_it(specs):
    assert normalize_tool_choice("any", specs[:1]) == ToolChoice("required", "add")


def test_tool_choice_naming_no_bound_tool_is_a_clear_error(specs):
    with pytest.raises(ValueError, match="'divide', which is not a bound tool; bound: add, "):
        normalize_tool_choice("divide", specs)
    with pytest.raises(ValueError, match="names no tool"):
        normalize_tool_choice({"type": "function"}, specs)
    with pytest.raises(ValueError, match="tool_choice must be"):
        normalize_tool_choice(3, specs)


def test_tools_prompt_is_the_hermes_format(specs):
    prompt = tools_system_prompt(specs[:1])
    assert "<tools>\n" + json.dumps(specs[0].openai()) + "\n</tools>" in prompt
    assert prompt.endswith(
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )
    turns = add_tools_prompt([{"role": "user", "content": "hi"}], specs[:1])
    assert turns[0] == {"role": "system", "content": prompt}
    turns = add_tools_prompt([{"role": "system", "content": "Be brief."}], specs[:1])
    assert turns[0]["content"] == "Be brief.\n\n" + prompt


def walk(grammar, tokenizer, text):
    ids = tokenizer.encode(text)
    for token_id in ids:
        if not grammar.allowed_mask()[token_id]:
            return False
        grammar.consume(token_id)
    return grammar.is_accepting()


def test_required_grammar_admits_one_valid_call_to_any_tool(specs, compiler):
    tokenizer = tiny_fast_tokenizer()
    ok = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
    assert walk(compiler.compile(tool_call_grammar(specs)), tokenizer, ok)
    grammar = compiler.compile(tool_call_grammar(specs))
    assert walk(grammar, tokenizer, ok)
    assert grammar.is_stopped()  # exactly one call, then the row ends
    wrong_type = ok.replace('"b": 2', '"b": "two"')
    assert not walk(compiler.compile(tool_call_grammar(specs)), tokenizer, wrong_type)
    weather = '<tool_call>\n{"name": "Weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    assert walk(compiler.compile(tool_call_grammar(specs)), tokenizer, weather)
    assert not walk(compiler.compile(tool_call_grammar(specs, "add")), tokenizer, weather)


def test_auto_grammar_admits_prose_or_a_call(specs, compiler):
    tokenizer = tiny_fast_tokenizer()
    call = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
    assert walk(compiler.compile(auto_tool_grammar(specs)), tokenizer, call)
    assert walk(compiler.compile(auto_tool_grammar(specs)), tokenizer, "It is 3 <b>.")
    assert not walk(compiler.compile(auto_tool_grammar(specs)), tokenizer, "<b>no</b>")


def test_every_grammar_compiles(specs, compiler):
    for spec in [tool_call_grammar(specs), tool_call_grammar(specs, "multiply")]:
        compiler.validate(spec)
    compiler.validate(auto_tool_grammar(specs))


def test_parse_calls_with_ids_and_content():
    text = (
        'Let me add.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'
        '<tool_call>{"name": "shout", "arguments": "{\\"text\\": \\"hi\\"}"}</tool_call>'
    )
    parsed = parse_tool_calls(text, known=["add", "shout"])
    assert parsed.content == "Let me add."
    assert [(c["name"], c["args"]) for c in parsed.tool_calls] == [
        ("add", {"a": 1, "b": 2}),
        ("shout", {"text": "hi"}),
    ]
    assert all(CALL_ID.match(c["id"] or "") for c in parsed.tool_calls)
    assert len({c["id"] for c in parsed.tool_calls}) == 2
    assert parsed.invalid_tool_calls == []
    message = AIMessage(content=parsed.content, tool_calls=parsed.tool_calls)
    assert message.tool_calls[0]["name"] == "add"


def test_plain_text_has_no_calls():
    parsed = parse_tool_calls("  Just an answer.  ")
    assert parsed.content == "  Just an answer.  " and not parsed.tool_calls


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("<tool_call>{not json}</tool_call>", "not JSON"),
        ('<tool_call>{"name": "add", "arguments": {"a": 1', "unterminated"),
        ('<tool_call>{"arguments": {}}</tool_call>', 'no string "name"'),
        ('<tool_call>{"name": "add", "arguments": 3}</tool_call>', 'no object "arguments"'),
        ('<tool_call>{"name": "nope", "arguments": {}}</tool_call>', "unknown tool 'nope'"),
    ],
)
def test_unusable_calls_become_invalid_tool_calls(text, error):
    parsed = parse_tool_calls(text, known=["add"])
    assert parsed.tool_calls == []
    (bad,) = parsed.invalid_tool_calls
    assert error in (bad["error"] or "")
    assert CALL_ID.match(bad["id"] or "")
    AIMessage(content="", invalid_tool_calls=parsed.invalid_tool_calls)  # LangChain takes it


def stream(pieces):
    parser = ToolCallStream()
    chunks = []
    for piece in pieces:
        content, calls = parser.push(piece)
        chunks.append(AIMessageChunk(content=content, tool_call_chunks=calls))
    content, calls = parser.finish()
    chunks.append(AIMessageChunk(content=content, tool_call_chunks=calls))
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


def test_streamed_chunks_merge_into_tool_calls():
    text = (
        'Sure. <tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>\n'
        '<tool_call>\n{"name": "shout", "arguments": {"text": "<b>"}}\n</tool_call>'
    )
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    total = stream(pieces)
    assert total.content.strip() == "Sure."
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [
        ("add", {"a": 1, "b": 2}),
        ("shout", {"text": "<b>"}),
    ]
    assert [c["index"] for c in total.tool_call_chunks] == [0, 1]
    assert all(CALL_ID.match(c["id"] or "") for c in total.tool_calls)


def test_streamed_content_holds_back_only_a_possible_tag():
    parser = ToolCallStream()
    assert parser.push("a <tool") == ("a ", [])
    assert parser.push("box>") == ("<toolbox>", [])
    assert parser.finish() == ("", [])


def test_streamed_truncated_call_is_invalid_not_completed():
    total = stream(['<tool_call>\n{"name": "add", "arguments": {"a": 1'])
    assert total.tool_calls == []
    assert len(total.invalid_tool_calls) == 1


class FakeEmbedder:
    """Bag-of-words vectors: enough to test the routing rules, not the encoder."""

    name = "fake"
    words = ("add", "integers", "sum", "weather", "city", "rain")

    def embed(self, texts):
        import numpy as np

        rows = []
        for text in texts:
            lowered = text.lower()
            # one extra axis for tool texts ("name: description"), another for requests,
            # so that a request sharing no word with a tool is orthogonal to it
            is_tool = ":" in text
            extra = [0.1 * is_tool, 0.1 * (not is_tool)]
            vector = np.array([float(w in lowered) for w in self.words] + extra, np.float32)
            rows.append(vector / np.linalg.norm(vector))
        return np.stack(rows)


def test_router_calls_the_fitting_tool_and_answers_otherwise(specs):
    router = EmbeddingToolRouter(FakeEmbedder(), threshold=0.4, margin=0.05)
    assert router.route([HumanMessage("Is there rain in the city?")], specs) == ["Weather"]
    assert router.route([HumanMessage("Tell me a joke")], specs) == []
    after_result = [
        HumanMessage("add 2 integers"),
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1"}]),
        ToolMessage("3", tool_call_id="c1"),
    ]
    assert router.route(after_result, specs) == []
    assert EmbeddingToolRouter(FakeEmbedder(), answer_after_tool_result=False).route(
        after_result, specs
    ) == ["add"]


def test_answer_grammar_per_tool_choice(specs):
    messages = [HumanMessage("sum of integers 2 and 3")]
    router = EmbeddingToolRouter(FakeEmbedder(), threshold=0.4)
    assert answer_grammar(ToolChoice("none"), specs, messages) is None
    assert answer_grammar(ToolChoice("required"), specs, messages) == tool_call_grammar(specs)
    named = answer_grammar(ToolChoice("required", "add"), specs, messages)
    assert named == tool_call_grammar(specs, "add")
    assert answer_grammar(ToolChoice("auto"), specs, messages) == auto_tool_grammar(specs)
    assert answer_grammar(ToolChoice("auto"), specs, messages, router) == tool_call_grammar(
        specs[:1]
    )
    joke = [HumanMessage("tell me a joke")]
    assert answer_grammar(ToolChoice("auto"), specs, joke, router) is None
    rain = [HumanMessage("rain in the city?")]
    assert answer_grammar(ToolChoice("required"), specs, rain, router) == tool_call_grammar(
        specs[1:2]
    )
    # required with nothing fitting: every tool stays callable
    assert answer_grammar(ToolChoice("required"), specs, joke, router) == tool_call_grammar(specs)
