"""Decoding engine: our token loop, KV caches, batching, sampling, stops, guidance.

No LangChain here: ``PADChatModel`` and the HTTP server are thin adapters over it.
"""

from langchain_pad.engine.guidance import DecodingStep, ForwardOutput, GuideSession, StepGuide
from langchain_pad.engine.loop import DecodingEngine, PromptTooLongError, WaveStats
from langchain_pad.engine.scheduler import BatchScheduler
from langchain_pad.engine.tickets import EngineClosedError, QueueTimeoutError, RequestTicket
from langchain_pad.engine.types import (
    FinishReason,
    GenerationOutput,
    GenerationRequest,
    SamplingParams,
    TokenEvent,
)

__all__ = [
    "BatchScheduler",
    "DecodingEngine",
    "DecodingStep",
    "EngineClosedError",
    "FinishReason",
    "ForwardOutput",
    "GenerationOutput",
    "GenerationRequest",
    "GuideSession",
    "PromptTooLongError",
    "QueueTimeoutError",
    "RequestTicket",
    "SamplingParams",
    "StepGuide",
    "TokenEvent",
    "WaveStats",
]
