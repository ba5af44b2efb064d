"""Engine events -> LangChain chunks, for one call of :class:`~langchain_pad.PADChatModel`.

Per-token data goes into every chunk as one-element lists: adding chunks concatenates
the lists, and a float never meets another float under the same key (LangChain refuses
to merge two different floats). Floats outside lists (weights, beta, the summary) ride
on the last chunk only. The lists sit in ``generation_info`` and on the message's
``response_metadata`` alike: LangChain copies the first into the second only on some
paths (``stream``), after some callbacks already saw the chunk (``invoke``, v3 event
streams), and handlers that read only the message (as LangGraph's
``stream_mode="messages"`` does) must find it. LangChain folds the two into one dict
when it builds the final message.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessageChunk
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import ToolCallChunk
from langchain_core.outputs import ChatGenerationChunk

from langchain_pad.records import PADStepRecord, summarize

if TYPE_CHECKING:
    from langchain_pad.engine import GenerationRequest, TokenEvent
    from langchain_pad.runtime import PADRuntime
    from langchain_pad.tools import ToolCallStream


@dataclass
class PreparedCall:
    """Everything one model call needs, resolved once; turns engine events into chunks."""

    model_name: str
    runtime: PADRuntime
    request: GenerationRequest
    tokenizer: Any = None
    axes: list[str] | None = None
    """The reward model's axes, for guided calls."""
    beta: float | None = None
    """The ``beta`` the guided rows decode with (the call's, or the reward model's)."""
    profile: dict[str, Any] | None = None
    strengths: tuple[float, ...] | None = None
    """The preference in pole units ([-1, 1] per axis); None for ``raw_weights``."""
    completion_tokens: int = 0
    records: list[PADStepRecord] = field(default_factory=list)
    tool_stream: ToolCallStream | None = None
    """With tools bound: splits the decoded text into content and ``tool_call_chunks``."""

    def chunk(self, event: TokenEvent) -> ChatGenerationChunk:
        self.completion_tokens += 1
        generation_info: dict[str, Any] = {
            "token_ids": [event.token_id],
            "token_logprobs": [event.logprob],
            "token_texts": [event.token_text],
        }
        if event.record is not None:
            generation_info["pad"] = self._pad_lists(event, event.record)
        elif self.axes is not None:
            generation_info["pad"] = _unscored_lists(event)
        metadata = copy.deepcopy(generation_info)  # two owners, no shared lists
        content, calls = event.text, list[ToolCallChunk]()
        if self.tool_stream is not None:
            content, calls = self.tool_stream.push(event.text)
            if event.finish_reason is not None:
                rest, more = self.tool_stream.finish()
                content, calls = content + rest, [*calls, *more]
        message = AIMessageChunk(
            content=content, tool_call_chunks=calls, response_metadata=metadata
        )
        if event.finish_reason is not None:
            prompt_tokens = len(self.request.prompt_ids)
            message = AIMessageChunk(
                content=content,
                tool_call_chunks=calls,
                chunk_position="last",
                usage_metadata=UsageMetadata(
                    input_tokens=prompt_tokens,
                    output_tokens=self.completion_tokens,
                    total_tokens=prompt_tokens + self.completion_tokens,
                ),
                response_metadata={
                    **metadata,
                    "model_name": self.model_name,
                    "finish_reason": event.finish_reason,
                    "model_provider": "pad",
                    **self._pad_metadata(),
                    **({} if self.profile is None else {"pad_profile": self.profile}),
                },
            )
        return ChatGenerationChunk(message=message, generation_info=generation_info)

    def _pad_lists(self, event: TokenEvent, record: PADStepRecord) -> dict[str, list[Any]]:
        self.records.append(record)
        lists: dict[str, list[Any]] = {
            "token_id": [event.token_id],
            "token_text": [event.token_text],
            **record.chunk_lists(),
        }
        same = record.base_token_id == event.token_id
        lists["base_token_text"] = [event.token_text if same else self._piece(record)]
        return lists

    def _piece(self, record: PADStepRecord) -> str:
        """A token's text on its own: only needed for the base choice PAD replaced."""
        if self.tokenizer is None:
            return ""
        text: str = self.tokenizer.decode(
            [record.base_token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        return text

    def _pad_metadata(self) -> dict[str, Any]:
        guidance = self.request.guidance
        if guidance is None or self.axes is None:
            return {}
        weights = dict(zip(self.axes, guidance.weights, strict=True))
        strengths = (
            {}
            if self.strengths is None
            else {"pad_strengths": dict(zip(self.axes, self.strengths, strict=True))}
        )
        return {
            "pad_axes": list(self.axes),
            **strengths,
            "pad_weights": weights,
            "pad_beta": self.beta,
            "pad_summary": summarize(self.records, self.axes, weights, self.beta),
        }


def _unscored_lists(event: TokenEvent) -> dict[str, list[Any]]:
    """The PAD lists of a guided call's token that no guide scored (a grammar forced it).

    Nulls keep the lists one entry per token, so that merged chunks still line up
    token by token; traces read the token as unguided (no reward, not changed).
    """
    return {
        "token_id": [event.token_id],
        "token_text": [event.token_text],
        "reward": [None],
        "features": [None],
        "base_logprob": [None],
        "base_rank": [None],
        "changed": [False],
        "base_token_id": [None],
        "base_token_text": [None],
    }
