"""The grammar unit on the real tokenizer and model, in a greedy loop of its own.

Not the engine (that wiring comes later): a plain loop over the model's logits that
masks with ``allowed_mask()``, consumes the pick, fast-forwards forced tokens in one
multi-token forward, and stops when the grammar stops. Every output must parse and
validate against its schema.
"""

from __future__ import annotations

import inspect
import json
import time
from typing import Literal

import pytest
import torch
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel

from langchain_pad._messages import render_prompt, to_turns
from langchain_pad.engine.grammar import GrammarCompiler, GrammarSpec
from langchain_pad.structured_output import structured_output_plan
from langchain_pad.tool_router import EmbeddingToolRouter, answer_grammar
from langchain_pad.tools import (
    ToolChoice,
    add_tools_prompt,
    convert_tools,
    parse_tool_calls,
    tool_call_grammar,
)


class Person(BaseModel):
    """A person."""

    name: str
    age: int


class Movie(BaseModel):
    """A movie."""

    title: str
    year: int


class Calculator(BaseModel):
    """Evaluate an arithmetic expression."""

    expression: str


class GetWeather(BaseModel):
    """Get the current weather in a city."""

    city: str
    unit: Literal["celsius", "fahrenheit"]


@pytest.fixture(scope="module")
def compiler(loaded):
    return GrammarCompiler(
        loaded.tokenizer, loaded.model.config.vocab_size, eos_token_ids=loaded.eos_token_ids
    )


def constrained_greedy(loaded, grammar, prompt_ids, max_new_tokens=96, fast_forward=True):
    """Greedy decoding under ``grammar``; returns the text and the forward count."""
    model = loaded.model
    cache_kwarg = (
        "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    )
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    feed = list(prompt_ids)
    out: list[int] = []
    forwards = 0
    with torch.inference_mode():
        while len(out) < max_new_tokens:
            logits = model(
                input_ids=torch.tensor([feed]), use_cache=True, **{cache_kwarg: cache}
            ).logits[0, -1]
            forwards += 1
            logits = logits.float().masked_fill(~grammar.allowed_mask(), float("-inf"))
            token_id = int(logits.argmax())
            grammar.consume(token_id)
            if token_id in loaded.eos_token_ids:
                break
            out.append(token_id)
            forced = grammar.forced_tokens() if fast_forward else []
            for forced_id in forced:
                grammar.consume(forced_id)
            out.extend(forced)
            if grammar.is_stopped():
                break
            feed = [token_id, *forced]
    return loaded.tokenizer.decode(out, skip_special_tokens=True), forwards


def prompt(loaded, question, system=None, specs=None):
    messages = ([SystemMessage(system)] if system else []) + [HumanMessage(question)]
    turns = to_turns(messages, tool_format="hermes")
    if specs:
        turns = add_tools_prompt(turns, specs)
    return render_prompt(loaded.tokenizer, turns)


JSON_SYSTEM = "Answer with a JSON object only."


def test_every_constrained_output_parses_and_validates(loaded, compiler):
    tools = convert_tools([Calculator, GetWeather])
    cases: list[tuple[str, list[int], GrammarSpec, object]] = []
    for question, schema in [
        ("Ada Lovelace was 36 years old when she died. Extract her name and age.", Person),
        ("The film Titanic came out in 1997. Give its title and year.", Movie),
    ]:
        plan = structured_output_plan(schema, "json_schema")
        cases.append((question, prompt(loaded, question, JSON_SYSTEM), plan.grammar, plan.parse))
    mode = structured_output_plan(None, "json_mode")
    question = "Describe a cat as JSON with the keys name and color."
    cases.append((question, prompt(loaded, question, JSON_SYSTEM), mode.grammar, mode.parse))
    router = EmbeddingToolRouter()
    for question in ["What is 234 * 19?", "What is the weather in Paris, in celsius?"]:

        def parse_call(text):
            parsed = parse_tool_calls(text, known=[t.name for t in tools])
            assert parsed.invalid_tool_calls == [], parsed.invalid_tool_calls
            (call,) = parsed.tool_calls
            model = {"Calculator": Calculator, "GetWeather": GetWeather}[call["name"]]
            return model.model_validate(call["args"])

        # tool_choice="required": the router narrows the call to the fitting tool
        # and a 40-character cap on free strings keeps the call inside the 96-token budget
        grammar = answer_grammar(
            ToolChoice("required"), tools, [HumanMessage(question)], router, max_string_length=40
        )
        assert grammar is not None
        cases.append((question, prompt(loaded, question, specs=tools), grammar, parse_call))

    results = []
    for question, prompt_ids, spec, parse in cases:
        grammar = compiler.compile(spec)
        start = time.perf_counter()
        text, forwards = constrained_greedy(loaded, grammar, prompt_ids)
        seconds = time.perf_counter() - start
        assert grammar.is_stopped() or grammar.is_accepting(), (question, text)
        value = parse(text)  # raises when the output does not validate
        results.append((question, text, value, forwards, seconds))
    for question, text, value, forwards, seconds in results:
        print(f"{question!r}\n  -> {text!r}\n  {value!r} ({forwards} forwards, {seconds:.1f} s)")
    assert len(results) == 5
    assert isinstance(results[3][2], Calculator)
    assert isinstance(results[4][2], GetWeather) and results[4][2].city == "Paris"


def test_calls_close_within_the_budget(loaded, compiler):
    """With free strings capped at 40 characters every call closes within 64 tokens;
    the arguments the model writes are printed for reading (accuracy is not asserted)."""
    tools = convert_tools([Calculator, GetWeather])
    for question in ["What is 234 * 19?", "Compute 17 + 25.", "Is it raining in London?"]:
        grammar = compiler.compile(tool_call_grammar(tools, max_string_length=40))
        text, forwards = constrained_greedy(
            loaded, grammar, prompt(loaded, question, specs=tools), 64
        )
        print(f"{question!r} -> {text!r} ({forwards} forwards)")
        assert grammar.is_stopped()
        assert parse_tool_calls(text).tool_calls


def test_a_loop_that_only_masks_writes_the_same_calls(loaded, compiler):
    """Fast-forwarding saves forward passes; it does not change what greedy writes."""
    tools = convert_tools([Calculator, GetWeather])
    for question in ["Compute 17 + 25.", "What is the weather in Paris, in celsius?"]:
        ids = prompt(loaded, question, specs=tools)
        runs = [
            constrained_greedy(
                loaded, compiler.compile(tool_call_grammar(tools)), ids, 64, fast_forward=ff
            )
            for ff in (True, False)
        ]
        print(f"{question!r}: {runs}")
        assert runs[0][0] == runs[1][0]
        assert runs[0][1] < runs[1][1]


def test_mask_cost_per_step_is_small_next_to_a_decoding_step(loaded, compiler):
    tools = convert_tools([Calculator, GetWeather])
    grammar = compiler.compile(tool_call_grammar(tools))
    text = (
        '<tool_call>\n{"name": "GetWeather", "arguments": {"city": "Paris", "unit": "celsius"}}'
        "\n</tool_call>"
    )
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    start = time.perf_counter()
    for token_id in ids:
        grammar.allowed_mask()
        grammar.consume(token_id)
    per_step_ms = (time.perf_counter() - start) / len(ids) * 1e3
    print(f"mask + consume: {per_step_ms:.3f} ms per step over {len(ids)} steps")
    assert grammar.is_stopped()
    assert per_step_ms < 3.5  # a tenth of a ~35 ms decoding step
    json.dumps(per_step_ms)
