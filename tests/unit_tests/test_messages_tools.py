"""Hermes rendering of tool traffic (the existing summary rendering is in test_messages.py)."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from langchain_pad._messages import ai_tool_calls, to_turns

CALL = {"name": "add", "args": {"a": 1, "b": 2}, "id": "c1"}
ADD_BLOCK = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'


def test_calls_and_results_in_the_hermes_format():
    turns = to_turns(
        [
            SystemMessage("sys"),
            HumanMessage("add 1 and 2"),
            AIMessage("", tool_calls=[CALL]),
            ToolMessage("3", tool_call_id="c1"),
        ],
        tool_format="hermes",
    )
    assert turns == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "add 1 and 2"},
        {"role": "assistant", "content": ADD_BLOCK},
        {"role": "user", "content": "<tool_response>\n3\n</tool_response>"},
    ]


def test_text_before_calls_and_parallel_results_merge():
    second = {"name": "add", "args": {"a": 3, "b": 4}, "id": "c2"}
    turns = to_turns(
        [
            HumanMessage("two sums"),
            AIMessage("Adding.", tool_calls=[CALL, second]),
            ToolMessage("3", tool_call_id="c1"),
            ToolMessage([{"type": "text", "text": "7"}], tool_call_id="c2"),
        ],
        tool_format="hermes",
    )
    assert turns[1]["content"] == "Adding.\n" + ADD_BLOCK + "\n" + ADD_BLOCK.replace(
        '"a": 1, "b": 2', '"a": 3, "b": 4'
    )
    assert turns[2] == {
        "role": "user",
        "content": "<tool_response>\n3\n</tool_response>\n\n<tool_response>\n7\n</tool_response>",
    }


def test_calls_in_content_blocks_and_openai_kwargs_are_read():
    blocks = AIMessage(
        content=[
            {"type": "text", "text": "ok"},
            {"type": "tool_call", "name": "add", "args": {"a": 1, "b": 2}, "id": "c1"},
            {"type": "tool_use", "name": "shout", "input": {"text": "hi"}, "id": "c2"},
        ]
    )
    assert ai_tool_calls(blocks) == [("add", {"a": 1, "b": 2}), ("shout", {"text": "hi"})]
    assert to_turns([blocks], tool_format="hermes")[0]["content"].startswith("ok\n<tool_call>")
    both = AIMessage(content=[{"type": "tool_call", **CALL}], tool_calls=[CALL])
    assert ai_tool_calls(both) == [("add", {"a": 1, "b": 2})]  # listed once
    openai = AIMessage(
        "",
        additional_kwargs={
            "tool_calls": [{"id": "c1", "function": {"name": "add", "arguments": '{"a": 1}'}}]
        },
    )
    assert ai_tool_calls(openai) == [("add", {"a": 1})]


def test_messages_without_tools_render_the_same_in_both_formats():
    messages = [SystemMessage("s"), HumanMessage("h"), AIMessage("a"), HumanMessage("h2")]
    assert to_turns(messages, tool_format="hermes") == to_turns(messages)
