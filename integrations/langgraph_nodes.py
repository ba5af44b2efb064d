"""Per-user PAD in LangGraph nodes: the run context names whom the graph answers.

```python
graph = StateGraph(MessagesState, context_schema=PADContext)
graph.add_node("chat", chat_node(PADChatModel()))
graph.compile().invoke({"messages": [...]}, context=PADContext(user_id="ana"))
```
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_core.language_models import LanguageModelInput
    from langchain_core.messages import AIMessage

    from langchain_pad import PADChatModel

__all__ = ["PADContext", "ainvoke_with_context", "chat_node", "invoke_with_context", "pad_kwargs"]


@dataclass
class PADContext:
    """Run context naming whom a graph answers: pass as ``context_schema`` / ``context=``.

    Any object (dataclass, pydantic model, ``TypedDict``/dict) with some of these
    fields works with :func:`pad_kwargs`; this one is a ready-made default.
    """

    user_id: str | None = None
    preference: str | None = None
    weights: dict[str, float] | None = None


_CONTEXT_FIELDS = ("user_id", "preference", "weights")


def pad_kwargs(context: Any) -> dict[str, Any]:
    """The PADChatModel call parameters (``user_id``, ``preference``, ``weights``) in a
    graph's run context; fields that are missing or None are left out."""
    if context is None:
        return {}
    out: dict[str, Any] = {}
    for name in _CONTEXT_FIELDS:
        value = context.get(name) if isinstance(context, Mapping) else getattr(context, name, None)
        if value is not None:
            out[name] = value
    return out


def _context(runtime: Any) -> Any:
    if runtime is None:
        from langgraph.runtime import get_runtime

        runtime = get_runtime()
    return runtime.context


def invoke_with_context(
    llm: PADChatModel, messages: LanguageModelInput, runtime: Any = None, **kwargs: Any
) -> AIMessage:
    """``llm.invoke(messages)`` for the user named in the graph's run context.

    Call it inside a node; ``runtime`` defaults to the current run's. Tokens reach
    ``stream_mode="messages"`` as they are decoded.
    """
    return llm.invoke(messages, **pad_kwargs(_context(runtime)), **kwargs)


async def ainvoke_with_context(
    llm: PADChatModel, messages: LanguageModelInput, runtime: Any = None, **kwargs: Any
) -> AIMessage:
    """Async twin of :func:`invoke_with_context`."""
    return await llm.ainvoke(messages, **pad_kwargs(_context(runtime)), **kwargs)


def chat_node(
    llm: PADChatModel, *, system_prompt: str | None = None, messages_key: str = "messages"
) -> Callable[[Mapping[str, Any], Any], dict[str, Any]]:
    """A graph node answering the conversation in ``state[messages_key]``, personalized
    by the run context (see :class:`PADContext`)."""
    from langchain_core.messages import SystemMessage

    def pad_chat(state: Mapping[str, Any], runtime: Any) -> dict[str, Any]:
        messages = list(state[messages_key])
        if system_prompt:
            messages = [SystemMessage(system_prompt), *messages]
        return {messages_key: [invoke_with_context(llm, messages, runtime)]}

    return pad_chat
