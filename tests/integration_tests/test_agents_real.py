"""LangChain v1 ``create_agent`` on the real model: tools run, each user gets their own answer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("langchain.agents")

from langchain.agents import create_agent

from langchain_pad import PADChatModel
from langchain_pad.integrations.agents import PADPersonalization
from langchain_pad.integrations.langgraph import PADContext

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from study_agent import calculator, glossary

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def agent():
    return create_agent(
        PADChatModel(max_tokens=96),
        tools=[calculator, glossary],
        middleware=[PADPersonalization()],
        context_schema=PADContext,
    )


def test_two_users_with_opposite_preferences_get_the_tool_result_their_own_way(agent):
    answers = {}
    for name, context in {
        "elementary": PADContext(weights={"expertise": -1.0}),
        "expert": PADContext(weights={"expertise": 1.0}),
    }.items():
        state = agent.invoke({"messages": [("user", "What is 12 * 7?")]}, context=context)
        tool_results = [m.content for m in state["messages"] if m.type == "tool"]
        assert tool_results == ["84"], state["messages"]  # the tool ran, with valid arguments
        answers[name] = state["messages"][-1].content
        assert "84" in answers[name]  # the final answer uses the tool's result
        assert state["messages"][-1].response_metadata["pad_weights"]["expertise"] != 0
    assert answers["elementary"] != answers["expert"]


def test_the_model_profile_says_what_agents_may_use():
    profile = PADChatModel().profile or {}
    assert profile.get("tool_calling") and profile.get("structured_output")
    assert profile.get("tool_choice")
