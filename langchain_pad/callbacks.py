"""Collect what PAD did to each token, through LangChain's own callback channel.

Attach a handler like any LangChain callback and read the traces afterwards:

```python
from langchain_pad import PADChatModel
from langchain_pad.callbacks import TokenRewardHandler
from langchain_pad.render import render_html

handler = TokenRewardHandler()
llm = PADChatModel(reward_model="my-persrm", max_tokens=64)
llm.invoke("Explain a rainbow.", weights={"expertise": 0.0},
           config={"callbacks": [handler], "metadata": {"pad_label": "base"}})
llm.invoke("Explain a rainbow.", weights={"expertise": 1.0},
           config={"callbacks": [handler], "metadata": {"pad_label": "expert"}})
render_html(*handler.traces, path="rainbow.html")
handler.table()  # {"run_id": [...], "text": [...], "reward": [...], "phi:expertise": ...}
```

The model sends one chunk per token and each chunk carries that token's PAD data
(``generation_info["pad"]``), so the handler sees exactly one ``on_llm_new_token`` per
generated token whichever way the model is called: ``invoke``, ``stream``, ``batch``,
``astream_events`` (v2 and v3). Several runs may stream at once (``batch``, threads,
tasks): traces are kept per run id behind one lock.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, GenerationChunk, LLMResult

from langchain_pad.traces import RunTrace, TokenRecord, record_at, records_table, traces_table

__all__ = ["AsyncTokenRewardHandler", "TokenRewardHandler"]

LABEL_METADATA_KEY = "pad_label"
"""Run metadata key whose value names a run in traces and renderings."""


class _TraceBook:
    """The thread-safe store both handlers share: one :class:`RunTrace` per run id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._traces: dict[str, RunTrace] = {}

    # ------------------------------------------------------------------ writing

    def _get(self, run_id: UUID | str) -> RunTrace:
        key = str(run_id)
        trace = self._traces.get(key)
        if trace is None:  # a token of a run whose start we did not see
            trace = self._traces[key] = RunTrace(run_id=key)
        return trace

    def start(
        self,
        run_id: UUID,
        messages: Sequence[BaseMessage],
        metadata: Mapping[str, Any] | None,
        name: str | None,
    ) -> None:
        label = str((metadata or {}).get(LABEL_METADATA_KEY) or name or "")
        with self._lock:
            trace = self._get(run_id)
            trace.label = label
            trace.prompt = _prompt_text(messages)

    def token(self, run_id: UUID, chunk: Any) -> None:
        info: Mapping[str, Any] = getattr(chunk, "generation_info", None) or {}
        message = getattr(chunk, "message", None)
        metadata: Mapping[str, Any] = getattr(message, "response_metadata", None) or {}
        source = info if "token_ids" in info else metadata
        ids = source.get("token_ids")
        if not ids:
            return  # not a token (LangChain's closing empty chunk, another provider)
        texts = source.get("token_texts") or [getattr(chunk, "text", "")] + [""] * (len(ids) - 1)
        logprobs = source.get("token_logprobs") or [None] * len(ids)
        pad: Mapping[str, Sequence[Any]] = source.get("pad") or {}
        with self._lock:
            trace = self._get(run_id)
            for i, token_id in enumerate(ids):
                trace.tokens.append(
                    _with_index(
                        record_at(trace.run_id, i, token_id, texts[i], logprobs[i], pad),
                        len(trace.tokens),
                    )
                )
            _take_run_metadata(trace, metadata)

    def end(self, run_id: UUID, response: LLMResult) -> None:
        with self._lock:
            trace = self._get(run_id)
            for generations in response.generations[:1]:
                for generation in generations[:1]:
                    message = getattr(generation, "message", None)
                    _take_run_metadata(trace, getattr(message, "response_metadata", None) or {})
            trace.done = True

    def error(self, run_id: UUID, error: BaseException) -> None:
        with self._lock:
            trace = self._get(run_id)
            trace.error = f"{type(error).__name__}: {error}"
            trace.done = True

    # ------------------------------------------------------------------ reading

    @property
    def traces(self) -> list[RunTrace]:
        """Copies of all traces, in the order their runs started."""
        with self._lock:
            return [_copy(t) for t in self._traces.values()]

    def trace(self, run_id: UUID | str) -> RunTrace:
        """A copy of one run's trace; ``KeyError`` for a run this handler never saw."""
        with self._lock:
            return _copy(self._traces[str(run_id)])

    def records(self, run_id: UUID | str | None = None) -> list[TokenRecord]:
        """Token records of one run, or of all runs (run after run)."""
        traces = self.traces if run_id is None else [self.trace(run_id)]
        return [r for t in traces for r in t.tokens]

    def table(self, run_id: UUID | str | None = None) -> dict[str, list[Any]]:
        """The records as columns (``{name: values}``), one row per token; no pandas needed."""
        if run_id is not None:
            trace = self.trace(run_id)
            return records_table(trace.tokens, trace.axes)
        return traces_table(self.traces)

    def pop(self, run_id: UUID | str) -> RunTrace:
        """Remove and return one run's trace: long-lived handlers need not grow forever."""
        with self._lock:
            return self._traces.pop(str(run_id))

    def clear(self) -> None:
        with self._lock:
            self._traces.clear()


def _prompt_text(messages: Sequence[BaseMessage]) -> str:
    if len(messages) == 1:
        return messages[0].text
    return "\n".join(f"{m.type}: {m.text}" for m in messages)


def _with_index(record: TokenRecord, index: int) -> TokenRecord:
    from dataclasses import replace

    return replace(record, index=index)


def _take_run_metadata(trace: RunTrace, metadata: Mapping[str, Any]) -> None:
    """Copy the run-level fields the model's last chunk carries (weights, summary...)."""
    if "pad_axes" in metadata:
        trace.axes = list(metadata["pad_axes"])
    if "pad_weights" in metadata:
        trace.weights = dict(metadata["pad_weights"])
    if "pad_beta" in metadata:
        trace.beta = metadata["pad_beta"]
    if "pad_summary" in metadata:
        trace.summary = dict(metadata["pad_summary"])
    if metadata.get("finish_reason"):
        trace.finish_reason = str(metadata["finish_reason"])


def _copy(trace: RunTrace) -> RunTrace:
    from dataclasses import replace

    return replace(
        trace,
        tokens=list(trace.tokens),
        axes=list(trace.axes),
        weights=dict(trace.weights),
        summary=dict(trace.summary) if trace.summary is not None else None,
    )


class TokenRewardHandler(_TraceBook, BaseCallbackHandler):
    """Records every generated token's PAD data, per run; works in sync and async runs.

    It runs inline (no thread hop) in async runs too, so tokens are recorded in order
    and as they arrive. Read results with :attr:`traces`, :meth:`trace`,
    :meth:`records` and :meth:`table`.
    """

    run_inline = True

    def __init__(self) -> None:
        _TraceBook.__init__(self)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.start(run_id, messages[0] if messages else [], metadata, kwargs.get("name"))

    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self.token(run_id, chunk)

    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self.end(run_id, response)

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        self.error(run_id, error)


class AsyncTokenRewardHandler(_TraceBook, AsyncCallbackHandler):
    """The same recorder as an ``AsyncCallbackHandler``, for async-only callback lists.

    Its methods only append under a lock, so they never block the event loop for long.
    """

    def __init__(self) -> None:
        _TraceBook.__init__(self)

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.start(run_id, messages[0] if messages else [], metadata, kwargs.get("name"))

    async def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.token(run_id, chunk)

    async def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.end(run_id, response)

    async def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.error(run_id, error)
