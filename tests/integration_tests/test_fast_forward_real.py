"""Fast-forwarding on the real model, grammars and PersRM: the same greedy tokens, fewer steps.

One wave mixes constrained and free rows, guided (the shipped PersRM) and plain; each
row is also decoded alone, where its forced runs go in one multi-token forward of the
base model and of the PersRM's adapter cache. With and without fast-forwarding, every
row must write the same token ids.
"""

from __future__ import annotations

from typing import Literal

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel

from langchain_pad._messages import render_prompt, to_turns
from langchain_pad.engine import DecodingEngine, GenerationRequest, SamplingParams
from langchain_pad.engine.grammar import GrammarCompiler, GrammarSpec
from langchain_pad.engine.pad import PADGuidance, PADGuide
from langchain_pad.reward_model import PersonalizedRewardModel
from langchain_pad.structured_output import structured_output_plan
from langchain_pad.tools import add_tools_prompt, convert_tools, tool_call_grammar


class Person(BaseModel):
    """A person."""

    name: str
    age: int


class GetWeather(BaseModel):
    """Get the current weather in a city."""

    city: str
    unit: Literal["celsius", "fahrenheit"]


class Calculator(BaseModel):
    """Evaluate an arithmetic expression."""

    expression: str


@pytest.fixture(scope="module")
def compiler(loaded):
    return GrammarCompiler(
        loaded.tokenizer, loaded.model.config.vocab_size, eos_token_ids=loaded.eos_token_ids
    )


@pytest.fixture(scope="module")
def engine(loaded):
    return DecodingEngine(
        loaded.model,
        loaded.tokenizer,
        eos_token_ids=loaded.eos_token_ids,
        context_length=loaded.context_length,
    )


@pytest.fixture(scope="module")
def reward_model(loaded) -> PersonalizedRewardModel:
    from langchain_pad.models import resolve_reward_model

    return PersonalizedRewardModel.load(resolve_reward_model("default"), loaded.model)


def cases(loaded) -> list[tuple[list[int], GrammarSpec | None]]:
    tools = convert_tools([Calculator, GetWeather])

    def ids(question: str, *, system: str | None = None, with_tools: bool = False) -> list[int]:
        messages = ([SystemMessage(system)] if system else []) + [HumanMessage(question)]
        turns = to_turns(messages, tool_format="hermes")
        if with_tools:
            turns = add_tools_prompt(turns, tools)
        return render_prompt(loaded.tokenizer, turns)

    person = structured_output_plan(Person, "json_schema").grammar
    return [
        (ids("What is the weather in Paris, in celsius?", with_tools=True),
         tool_call_grammar(tools, max_string_length=24)),
        (ids("Ada Lovelace was 36 when she died. Extract her name and age.",
             system="Answer with a JSON object only."), person),
        (ids("Explain what a rainbow is."), None),
        (ids("Compute 17 + 25.", with_tools=True), tool_call_grammar(tools, max_string_length=24)),
        (ids("Bob is 41 years old. Extract his name and age.",
             system="Answer with a JSON object only."), person),
        (ids("Why is the sky blue?"), None),
    ]  # fmt: skip


def requests(loaded, compiler, reward_model) -> list[GenerationRequest]:
    elementary = PADGuidance(reward_model.weight_vector({"expertise": -6.0}))
    out = []
    for i, (prompt_ids, spec) in enumerate(cases(loaded)):
        grammar = compiler.compile(spec) if spec is not None else None
        guidance = elementary if i % 3 != 0 else None  # guided and plain, both kinds
        out.append(GenerationRequest(tuple(prompt_ids), SamplingParams(40), guidance, grammar))
    return out


def decode(engine, reqs, guide, fast_forward):
    engine.fast_forward = fast_forward
    try:
        outs = engine.generate(reqs, guide)
    finally:
        engine.fast_forward = True
    return [o.token_ids for o in outs], engine.last_stats


def test_greedy_tokens_are_the_same_with_and_without_fast_forward(
    loaded, engine, compiler, reward_model
):
    guide = PADGuide(reward_model)
    batched_ff, ff_stats = decode(engine, requests(loaded, compiler, reward_model), guide, True)
    batched, stats = decode(engine, requests(loaded, compiler, reward_model), guide, False)
    assert batched_ff == batched
    assert ff_stats.forced_tokens > 0 and stats.forced_tokens == 0
    saved = []
    for i in range(len(batched)):
        row = [requests(loaded, compiler, reward_model)[i]]
        alone_ff, one_ff = decode(engine, row, guide, True)
        row = [requests(loaded, compiler, reward_model)[i]]  # a fresh grammar state
        alone, one = decode(engine, row, guide, False)
        assert alone_ff == alone == [batched[i]], i
        saved.append((one.forward_passes, one_ff.forward_passes, one_ff.forced_tokens))
    for i, ids in enumerate(batched):
        print(i, saved[i], repr(loaded.tokenizer.decode(ids)))
    constrained = [s for s, (_, spec) in zip(saved, cases(loaded), strict=True) if spec]
    assert all(ff < plain for plain, ff, _ in constrained)
