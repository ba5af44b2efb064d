"""LangChain v1 agents, per user: one agent, each call steered by its user's preference.

```python
from langchain.agents import create_agent
from langchain_pad import PADChatModel
from langchain_pad.integrations.agents import PADPersonalization
from langchain_pad.integrations.langgraph import PADContext
from langchain_pad.profiles import SQLiteProfileStore

agent = create_agent(
    PADChatModel(max_tokens=96),
    tools=[calculator],
    middleware=[PADPersonalization(SQLiteProfileStore())],
    context_schema=PADContext,
)
agent.invoke({"messages": [("user", "What is 17 * 3?")]}, context=PADContext(user_id="ana"))
```

The middleware reads ``user_id`` / ``preference`` / ``weights`` from the agent's run
context (:func:`~langchain_pad.integrations.langgraph.pad_kwargs`) and hands them to
every model call of the loop, tool-calling turns and the final answer alike; the chat
model's one resolver (``langchain_pad.preferences``) decides the ``w_p``. Tool calls
stay grammar-constrained whatever the steering.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

try:
    from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "langchain_pad.integrations.agents needs LangChain v1 agents: pip install 'langchain>=1'"
    ) from exc

from langchain_pad.integrations.langgraph import pad_kwargs

__all__ = ["PADPersonalization"]


class PADPersonalization(AgentMiddleware[Any, Any]):
    """Applies the run context's user to every model call of a ``create_agent`` loop.

    ``store``: the profile store ``user_id`` and ``preference`` resolve in; None keeps
    the chat model's own (``profile_store=``; without any, ``preference`` is matched
    against the reward model's anchor poles).
    """

    def __init__(self, store: Any = None) -> None:
        super().__init__()
        self.store = store

    def _personalize(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
        from langchain_pad import PADChatModel

        context = request.runtime.context if request.runtime is not None else None
        settings = {**request.model_settings, **pad_kwargs(context)}
        model = request.model
        if self.store is not None:
            if not isinstance(model, PADChatModel):
                raise TypeError(
                    "PADPersonalization(store) personalizes a PADChatModel; the agent's "
                    f"model is a {type(model).__name__}."
                )
            model = model.model_copy(update={"profile_store": self.store})
        return request.override(model=model, model_settings=settings)

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any]:
        return handler(self._personalize(request))

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any]:
        return await handler(self._personalize(request))
