"""LangChain messages -> prompt token ids, for any valid conversation.

Chat templates are strict (alternating roles, system only first, no system at all for
some models); LangChain conversations are not. This module normalizes the second into
the first: text-only content, consecutive same-role turns merged, system text folded
into the first user turn when the template has no system role, a trailing assistant
turn continued rather than closed, and a plain transcript for models with no template.

Tool traffic has two renderings. ``"summary"`` (the default, kept for conversations
sent to a model with no tools bound) writes calls and results as short prose.
``"hermes"`` writes them the way SmolLM2's Ollama template (and Qwen's, Hermes') does,
which is what the model is prompted with when tools are bound
(:func:`langchain_pad.tools.tools_system_prompt`): calls as
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` in the assistant turn,
results as ``<tool_response>...</tool_response>`` in a user turn.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, ChatMessage, ToolMessage

Turn = dict[str, str]
ToolFormat = Literal["summary", "hermes"]

_ROLE_BY_TYPE = {
    "system": "system",
    "developer": "system",
    "human": "user",
    "ai": "assistant",
    "tool": "user",
    "function": "user",
}
_TEXT_BLOCK_TYPES = {"text", "text-plain"}
_SKIPPED_BLOCK_TYPES = {"reasoning", "thinking", "tool_call", "tool_call_chunk", "tool_use"}


def message_text(message: BaseMessage) -> str:
    """The text of a message; non-text blocks (images, audio, files) are refused."""
    content = message.content
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
            continue
        kind = block.get("type")
        if kind in _TEXT_BLOCK_TYPES:
            parts.append(str(block.get("text", "")))
        elif kind in _SKIPPED_BLOCK_TYPES:
            continue
        else:
            raise ValueError(
                f"PADChatModel runs a text-only language model and cannot read a "
                f"'{kind}' content block (in a {message.type} message). Send the "
                "content as text, or describe the non-text input in words."
            )
    return "".join(parts)


def ai_tool_calls(message: AIMessage) -> list[tuple[str, dict[str, Any]]]:
    """``(name, args)`` of every call an AI message made, whichever form it took.

    ``tool_calls``, then content blocks (LangChain's ``tool_call``, Anthropic's
    ``tool_use``) not already listed, then OpenAI's ``additional_kwargs["tool_calls"]``
    when nothing else was given.
    """
    calls = [(c["name"], dict(c["args"])) for c in message.tool_calls]
    seen = {c["id"] for c in message.tool_calls if c.get("id")}
    if isinstance(message.content, list):
        for block in message.content:
            if not isinstance(block, dict) or block.get("type") not in ("tool_call", "tool_use"):
                continue
            if block.get("id") and block.get("id") in seen:
                continue
            args = block.get("args", block.get("input", {}))
            calls.append((str(block.get("name", "")), dict(args) if isinstance(args, dict) else {}))
    if not calls:
        for raw in message.additional_kwargs.get("tool_calls", None) or []:
            function = raw.get("function", {}) if isinstance(raw, dict) else {}
            try:
                args = json.loads(function.get("arguments") or "{}")
            except ValueError:
                args = {}
            calls.append((str(function.get("name", "")), args if isinstance(args, dict) else {}))
    return calls


def _turn_text(message: BaseMessage, tool_format: ToolFormat) -> str:
    text = message_text(message)
    if isinstance(message, ToolMessage):
        if tool_format == "hermes":
            return f"<tool_response>\n{text}\n</tool_response>"
        return f"Result of tool call {message.tool_call_id}: {text}"
    calls = ai_tool_calls(message) if isinstance(message, AIMessage) else []
    if calls and tool_format == "hermes":
        blocks = [
            "<tool_call>\n" + json.dumps({"name": name, "arguments": args}) + "\n</tool_call>"
            for name, args in calls
        ]
        return "\n".join([text, *blocks]) if text else "\n".join(blocks)
    if calls:
        joined = "; ".join(f"{name}({json.dumps(args)})" for name, args in calls)
        return f"{text}\n[called tools: {joined}]".strip()
    return text


def _role(message: BaseMessage) -> str:
    if isinstance(message, ChatMessage):
        role = message.role.lower()
        return {"human": "user", "ai": "assistant", "developer": "system"}.get(role, role)
    try:
        return _ROLE_BY_TYPE[message.type]
    except KeyError:
        raise ValueError(
            f"Unsupported message type '{message.type}': send system, human, ai or tool messages."
        ) from None


def to_turns(messages: list[BaseMessage], *, tool_format: ToolFormat = "summary") -> list[Turn]:
    """Role/content turns with consecutive same-role messages merged.

    ``tool_format="hermes"`` when tools are bound (see the module docstring).
    """
    if not messages:
        raise ValueError("The conversation is empty: send at least one message.")
    turns: list[Turn] = []
    for position, message in enumerate(messages):
        role, text = _role(message), _turn_text(message, tool_format)
        _check_encodable(text, position)
        if turns and turns[-1]["role"] == role:
            joined = "\n\n".join(t for t in (turns[-1]["content"], text) if t)
            turns[-1] = {"role": role, "content": joined}
        else:
            turns.append({"role": role, "content": text})
    return turns


def _check_encodable(text: str, position: int) -> None:
    """A lone surrogate (``"\\ud800"``) cannot be tokenized: say which message holds it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"message {position} contains a character that is not valid Unicode text "
            f"(a lone surrogate, {text[exc.start]!r} at offset {exc.start}); send valid "
            "UTF-8 text."
        ) from None


def fold_system(turns: list[Turn]) -> list[Turn]:
    """Move system text into the following user turn, for templates without a system role."""
    folded: list[Turn] = []
    pending: list[str] = []
    for turn in turns:
        if turn["role"] == "system":
            pending.append(turn["content"])
            continue
        if pending and turn["role"] == "user":
            turn = {"role": "user", "content": "\n\n".join([*pending, turn["content"]])}
            pending = []
        if folded and folded[-1]["role"] == turn["role"]:
            turn = {
                "role": turn["role"],
                "content": folded[-1]["content"] + "\n\n" + turn["content"],
            }
            folded.pop()
        folded.append(turn)
    if pending:
        folded.append({"role": "user", "content": "\n\n".join(pending)})
    return folded


def _plain_transcript(turns: list[Turn], continue_final: bool) -> str:
    labels = {"system": "System", "user": "User", "assistant": "Assistant"}
    lines = [f"{labels.get(t['role'], t['role'].title())}: {t['content']}" for t in turns]
    text = "\n\n".join(lines)
    return text if continue_final else text + "\n\nAssistant:"


@lru_cache(maxsize=32)
def _template_supports_system(tokenizer_key: int, template: str) -> bool:
    from jinja2 import TemplateError  # transformers renders templates with jinja2

    del tokenizer_key
    from transformers.utils.chat_template_utils import render_jinja_template

    sentinel = "zq-system-sentinel-zq"
    try:
        rendered: Any = render_jinja_template(
            conversations=[
                [{"role": "system", "content": sentinel}, {"role": "user", "content": "u"}]
            ],
            chat_template=template,
            add_generation_prompt=True,
        )
    except (TemplateError, Exception):
        return False
    first = rendered[0] if isinstance(rendered, tuple) else rendered
    return sentinel in (first[0] if isinstance(first, list) else first)


def render_prompt(tokenizer: Any, turns: list[Turn]) -> list[int]:
    """Token ids of the prompt for these turns, ready for generation."""
    continue_final = turns[-1]["role"] == "assistant"
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        text = _plain_transcript(turns, continue_final)
        ids: list[int] = tokenizer(text, add_special_tokens=True)["input_ids"]
        return ids
    if any(t["role"] == "system" for t in turns) and not _template_supports_system(
        id(tokenizer), template
    ):
        turns = fold_system(turns)
        continue_final = turns[-1]["role"] == "assistant"
    text = tokenizer.apply_chat_template(
        turns,
        tokenize=False,
        add_generation_prompt=not continue_final,
        continue_final_message=continue_final,
    )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids
