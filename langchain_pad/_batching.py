"""``batch`` for PADChatModel: every input on the decoding thread at once, in one wave.

LangChain's own ``Runnable.batch`` runs a thread pool of a few workers per core, which
splits a batch of 8 into waves on a 2-core machine, and it does not make each input's
config the run's context, where ``configurable`` (``user_id``, ``preference``) is read.
These run each ``invoke`` as a chain step runs (``set_config_context``), all at once
(``max_concurrency`` and the runtime's batch size cap the width), and hold the wave
until every input has arrived (``PADRuntime.gathering``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from langchain_core.runnables.config import (
    get_config_list,
    get_executor_for_config,
    set_config_context,
)

if TYPE_CHECKING:
    from langchain_core.language_models import LanguageModelInput
    from langchain_core.messages import AIMessage
    from langchain_core.runnables import RunnableConfig

    from langchain_pad.chat_model import PADChatModel

__all__ = ["abatch_in_one_wave", "batch_in_one_wave"]


def _wide_configs(
    model: PADChatModel,
    inputs: list[LanguageModelInput],
    config: RunnableConfig | list[RunnableConfig] | None,
) -> tuple[list[RunnableConfig], int]:
    configs = get_config_list(config, len(inputs))
    limit = configs[0].get("max_concurrency") or len(inputs)
    width = min(limit, len(inputs), model.get_runtime().max_batch_size)
    return [{**c, "max_concurrency": width} for c in configs], width


def batch_in_one_wave(
    model: PADChatModel,
    inputs: list[LanguageModelInput],
    config: RunnableConfig | list[RunnableConfig] | None,
    return_exceptions: bool,
    kwargs: dict[str, Any],
) -> list[AIMessage]:
    """``model.invoke`` of every input, together, each in its own config's context."""
    if not inputs:
        return []
    configs, width = _wide_configs(model, inputs, config)

    def one(index: int) -> AIMessage | Exception:
        with set_config_context(configs[index]) as context:
            try:
                message: AIMessage = context.run(
                    model.invoke, inputs[index], configs[index], **kwargs
                )
                return message
            except Exception as exc:
                if return_exceptions:
                    return exc
                raise

    runtime = model.get_runtime(kwargs.get("model"))
    with (
        runtime.gathering(width if width > 1 else 0),
        get_executor_for_config(configs[0]) as executor,
    ):
        return list(executor.map(one, range(len(inputs))))  # type: ignore[arg-type]


async def abatch_in_one_wave(
    model: PADChatModel,
    inputs: list[LanguageModelInput],
    config: RunnableConfig | list[RunnableConfig] | None,
    return_exceptions: bool,
    kwargs: dict[str, Any],
) -> list[AIMessage]:
    """Async twin of :func:`batch_in_one_wave`."""
    if not inputs:
        return []
    configs, width = _wide_configs(model, inputs, config)
    slots = asyncio.Semaphore(width)

    async def one(index: int) -> AIMessage | Exception:
        async with slots:
            with set_config_context(configs[index]) as context:
                call = model.ainvoke(inputs[index], configs[index], **kwargs)
                try:
                    message: AIMessage = await asyncio.create_task(call, context=context)
                    return message
                except Exception as exc:
                    if return_exceptions:
                        return exc
                    raise

    with model.get_runtime(kwargs.get("model")).gathering(width if width > 1 else 0):
        return list(await asyncio.gather(*(one(i) for i in range(len(inputs)))))  # type: ignore[arg-type]
