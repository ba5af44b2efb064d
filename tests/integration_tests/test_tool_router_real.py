"""The auto-mode router with the real offline sentence encoder (all-MiniLM-L6-v2).

These 12 requests are the ones the default threshold was chosen on, so this test
guards against regressions; it is not a held-out accuracy figure.
"""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from pydantic import BaseModel

from langchain_pad.tool_router import EmbeddingToolRouter
from langchain_pad.tools import convert_tools


class calculator(BaseModel):  # tool names are what the model reads
    """Evaluate an arithmetic expression."""

    expression: str


class get_weather(BaseModel):
    """Get the current weather in a city."""

    city: str


REQUESTS = [
    ("What is 234 * 19?", "calculator"),
    ("What's the weather in Paris right now?", "get_weather"),
    ("Compute 17 + 25 for me.", "calculator"),
    ("Is it raining in London?", "get_weather"),
    ("How much is 3.5 times 12?", "calculator"),
    ("What is the square root of 144?", "calculator"),
    ("Hi! How are you today?", None),
    ("Write a haiku about autumn.", None),
    ("Who wrote Hamlet?", None),
    ("Explain what photosynthesis is.", None),
    ("Tell me a joke.", None),
    ("Describe how clouds form.", None),
]


@pytest.fixture(scope="module")
def router():
    return EmbeddingToolRouter()


@pytest.fixture(scope="module")
def specs():
    return convert_tools([calculator, get_weather])


def test_router_calls_exactly_when_a_tool_fits(router, specs):
    decisions = [(q, router.route([HumanMessage(q)], specs)) for q, _ in REQUESTS]
    for (question, gold), (_, names) in zip(REQUESTS, decisions, strict=True):
        scores = router.scores(question, specs)
        print(f"{question!r}: {names} {scores}")
        assert names == ([gold] if gold else []), question


def test_router_answers_after_a_tool_result(router, specs):
    messages = [
        HumanMessage("What is 234 * 19?"),
        AIMessage(
            "", tool_calls=[{"name": "calculator", "args": {"expression": "234*19"}, "id": "c1"}]
        ),
        ToolMessage("4446", tool_call_id="c1"),
    ]
    assert router.route(messages, specs) == []
    assert router.route(messages, specs, required=True) == ["calculator"]
