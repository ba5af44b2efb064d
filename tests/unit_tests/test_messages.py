from __future__ import annotations

import pytest
from langchain_core.messages import (
    AIMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from langchain_pad._messages import _plain_transcript, fold_system, message_text, to_turns


def test_consecutive_same_role_messages_are_merged():
    turns = to_turns(
        [
            SystemMessage("s1"),
            SystemMessage("s2"),
            HumanMessage("h1"),
            HumanMessage("h2", name="bob"),
            AIMessage("a1"),
            AIMessage("a2"),
            HumanMessage("last"),
        ]
    )
    assert turns == [
        {"role": "system", "content": "s1\n\ns2"},
        {"role": "user", "content": "h1\n\nh2"},
        {"role": "assistant", "content": "a1\n\na2"},
        {"role": "user", "content": "last"},
    ]


def test_text_blocks_are_joined_and_reasoning_skipped():
    msg = HumanMessage(content=[{"type": "text", "text": "a"}, "b", {"type": "reasoning"}])
    assert message_text(msg) == "ab"


def test_non_text_content_is_refused_with_a_clear_error():
    msg = HumanMessage(content=[{"type": "image", "url": "http://x/y.png"}])
    with pytest.raises(ValueError, match="text-only.*'image'"):
        message_text(msg)


def test_tool_messages_and_tool_calls_become_text():
    turns = to_turns(
        [
            HumanMessage("add 1 and 2"),
            AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1, "b": 2}, "id": "c1"}]),
            ToolMessage("3", tool_call_id="c1"),
        ]
    )
    assert turns[1] == {"role": "assistant", "content": '[called tools: add({"a": 1, "b": 2})]'}
    assert turns[2] == {"role": "user", "content": "Result of tool call c1: 3"}


def test_chat_message_roles_are_normalized():
    assert to_turns([ChatMessage(role="Human", content="x")])[0]["role"] == "user"


def test_empty_conversation_is_refused():
    with pytest.raises(ValueError, match="empty"):
        to_turns([])


def test_fold_system_moves_system_text_into_the_next_user_turn():
    turns = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": "now be formal"},
        {"role": "user", "content": "bye"},
    ]
    assert fold_system(turns) == [
        {"role": "user", "content": "be brief\n\nhi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "now be formal\n\nbye"},
    ]


def test_fold_system_alone_becomes_a_user_turn():
    assert fold_system([{"role": "system", "content": "x"}]) == [{"role": "user", "content": "x"}]


def test_plain_transcript_for_models_without_a_template():
    turns = [{"role": "user", "content": "hi"}]
    assert _plain_transcript(turns, continue_final=False) == "User: hi\n\nAssistant:"
    turns.append({"role": "assistant", "content": "Well"})
    assert _plain_transcript(turns, continue_final=True).endswith("Assistant: Well")
