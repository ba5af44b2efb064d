"""OpenAI chat messages as LangChain messages, each malformed part a 400 naming it.

Apart from :mod:`server_requests` (the body and its schema): this is the one place that
knows how an OpenAI message, its content parts and its earlier tool calls map onto
LangChain's message classes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .server_requests import ChatMessage, RequestError

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

__all__ = ["to_langchain_messages"]


def _tool_calls(message: ChatMessage, index: int) -> list[dict[str, Any]]:
    """An assistant message's earlier tool calls (OpenAI form) as LangChain tool calls.

    Each must be ``{"id": ..., "type": "function", "function": {"name": str,
    "arguments": "<JSON object>"}}``; anything else is a 400 naming the call, not a
    call silently dropped or a 500.
    """
    raw = (message.model_extra or {}).get("tool_calls")
    if raw is None:
        return []
    where = f"messages[{index}].tool_calls"
    if not isinstance(raw, list):
        raise RequestError(400, f"{where}: a list of tool calls is expected.", param=where)
    calls: list[dict[str, Any]] = []
    for number, call in enumerate(raw):
        at = f"{where}[{number}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise RequestError(
                400,
                f'{at}: a tool call is expected, {{"id": ..., "type": "function", '
                '"function": {"name": "...", "arguments": "{...}"}}.',
                param=at,
            )
        call_id = call.get("id")
        if call_id is not None and not isinstance(call_id, str):
            raise RequestError(400, f"{at}.id: a string is expected.", param=at)
        arguments = function.get("arguments") or "{}"
        try:
            args = json.loads(arguments) if isinstance(arguments, str) else None
        except ValueError:
            args = None
        if not isinstance(args, dict):
            raise RequestError(
                400,
                f"{at}.function.arguments: a JSON object string is expected.",
                param=at,
            )
        calls.append({"name": function["name"], "args": args, "id": call_id})
    return calls


def _text(message: ChatMessage, index: int) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    texts = []
    for number, part in enumerate(message.content):
        where = f"messages[{index}].content[{number}]"
        if part.type != "text":
            raise RequestError(
                400,
                f"{where}: only text parts are supported "
                f'({{"type": "text", "text": "..."}}), got type {part.type!r}.',
                param=where,
            )
        if part.text is None:
            raise RequestError(
                400,
                f'{where}: a text part needs its text: {{"type": "text", "text": "..."}}.',
                param=f"{where}.text",
            )
        texts.append(part.text)
    return "".join(texts)


def to_langchain_messages(messages: list[ChatMessage]) -> list[BaseMessage]:
    """OpenAI chat messages -> LangChain messages (``developer`` counts as ``system``)."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    out: list[BaseMessage] = []
    for index, message in enumerate(messages):
        text = _text(message, index)
        if message.role in ("system", "developer"):
            out.append(SystemMessage(text))
        elif message.role == "user":
            out.append(HumanMessage(text))
        elif message.role == "assistant":
            out.append(AIMessage(text, tool_calls=_tool_calls(message, index)))
        elif message.role == "tool":
            call_id = (message.model_extra or {}).get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise RequestError(
                    400,
                    f"messages[{index}].tool_call_id: a tool message names the call it "
                    "answers (the id of an earlier assistant tool call).",
                    param=f"messages[{index}].tool_call_id",
                )
            out.append(ToolMessage(text, tool_call_id=call_id))
        else:
            raise RequestError(
                400,
                f"messages[{index}].role {message.role!r} is not supported; use system, "
                "developer, user, assistant or tool.",
                param=f"messages[{index}].role",
            )
    return out
