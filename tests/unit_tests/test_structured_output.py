from __future__ import annotations

import pytest
from langchain_core.exceptions import OutputParserException
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from langchain_pad.engine.grammar import GrammarCompiler, GrammarError, JSONSchemaGrammar
from langchain_pad.structured_output import structured_output_plan

from ._tokenizers import TINY_EOS_ID, tiny_fast_tokenizer


class Person(BaseModel):
    """A person."""

    name: str
    age: int = Field(ge=0)


class Movie(TypedDict):
    """A movie."""

    title: str
    year: int


PERSON_SCHEMA = {
    "title": "Person",
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_fast_tokenizer()


@pytest.fixture(scope="module")
def compiler(tokenizer):
    return GrammarCompiler(tokenizer, 300, eos_token_ids={TINY_EOS_ID})


def accepts(compiler, tokenizer, spec, text):
    grammar = compiler.compile(spec)
    for token_id in tokenizer.encode(text):
        if not grammar.allowed_mask()[token_id]:
            return False
        grammar.consume(token_id)
    return grammar.is_accepting()


@pytest.mark.parametrize("schema", [Person, Movie, PERSON_SCHEMA])
def test_json_schema_method_constrains_to_the_schema(compiler, tokenizer, schema):
    plan = structured_output_plan(schema, "json_schema")
    assert isinstance(plan.grammar, JSONSchemaGrammar)
    text = '{"title": "Up", "year": 2009}' if schema is Movie else '{"name": "Ada", "age": 36}'
    assert accepts(compiler, tokenizer, plan.grammar, text)
    assert not accepts(compiler, tokenizer, plan.grammar, '{"name": 3}')
    result = plan.parse(text)
    if schema is Person:
        assert result == Person(name="Ada", age=36)
    else:
        assert isinstance(result, dict) and len(result) == 2


def test_function_calling_method_is_one_call_to_the_schema_tool(compiler, tokenizer):
    plan = structured_output_plan(Person, "function_calling")
    assert plan.tool is not None and plan.tool.name == "Person"
    text = '<tool_call>\n{"name": "Person", "arguments": {"name": "Ada", "age": 36}}\n</tool_call>'
    assert accepts(compiler, tokenizer, plan.grammar, text)
    assert plan.parse(text) == Person(name="Ada", age=36)
    with pytest.raises(OutputParserException, match="unterminated"):
        plan.parse(text[:-14])


def test_json_mode_is_any_object(compiler, tokenizer):
    plan = structured_output_plan(None, "json_mode")
    assert accepts(compiler, tokenizer, plan.grammar, '{"anything": [1, 2]}')
    assert not accepts(compiler, tokenizer, plan.grammar, "[1]")
    assert plan.parse('{"a": 1}') == {"a": 1}
    assert structured_output_plan(Person, "json_mode").parse('{"name": "A", "age": 1}') == Person(
        name="A", age=1
    )


def test_parser_validates_and_reports_truncation():
    plan = structured_output_plan(Person, "json_schema")
    with pytest.raises(OutputParserException, match="not complete JSON"):
        plan.parse('{"name": "Ada", "ag')
    with pytest.raises(OutputParserException, match="does not fit Person"):
        plan.parse('{"name": "Ada", "age": -1}')  # ge=0 is checked by pydantic


def test_bad_schema_and_method_are_refused_at_bind_time():
    with pytest.raises(GrammarError, match="'Bad' cannot be compiled.*Unimplemented keys"):
        structured_output_plan(
            {"title": "Bad", "type": "object", "properties": {"x": {"not": {}}}}, "json_schema"
        )
    with pytest.raises(ValueError, match="needs a schema"):
        structured_output_plan(None, "json_schema")
    with pytest.raises(ValueError, match="Unknown structured output method"):
        structured_output_plan(Person, "xml")  # type: ignore[arg-type]
