"""``tool_choice="auto"``: decide, before decoding, whether to call a tool, and which.

Why not let the model decide: with the tools in its system prompt, the embedded
SmolLM2-135M puts at most about 3% on ``<`` (the start of ``<tool_call>``) as its first
token, even for "What is 234 * 19?" with a calculator bound, so a first-token decision
never calls; a router prompt ("which tool fits? answer with a name or none"), scored by
likelihood, with or without contextual calibration, picked right on 5 of 10 prompts; a
yes/no question per tool did no better (measured 2026-12-02, 10 prompts, 2 tools).
Which tool fits a request is a retrieval question, and a sentence encoder answers it
well: all-MiniLM-L6-v2 (shipped offline, the profile store's embedder) scored
request-vs-"name: description" at 0.29-0.51 for the 6 requests a tool fits and at most
0.24 for the 6 it does not. So :class:`EmbeddingToolRouter` makes the decision, and the
grammar then makes the call well formed; the model only writes the arguments. The
threshold (0.27) was chosen on those 12 requests; on 12 others written afterwards it
decided right on 10 (the two misses were calls not made: "What is 15% of 80?" at 0.23,
"Do I need an umbrella in Seattle?" at 0.19; no call was made where none fitted).

The decision is per conversation, not per token, so it is not a step unit: the chat
model asks :func:`answer_grammar` for the row's grammar before it submits the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage

from langchain_pad._messages import message_text
from langchain_pad.engine.grammar import GrammarSpec
from langchain_pad.tools import (
    DEFAULT_MAX_STRING_LENGTH,
    ToolChoice,
    ToolSpec,
    auto_tool_grammar,
    tool_call_grammar,
)

if TYPE_CHECKING:
    from langchain_pad.embeddings import Embedder

__all__ = ["EmbeddingToolRouter", "ToolRouter", "answer_grammar"]


class ToolRouter(Protocol):
    """Chooses, for a conversation, the tools the answer may call (none: answer in prose)."""

    def route(
        self, messages: Sequence[BaseMessage], specs: Sequence[ToolSpec], *, required: bool = False
    ) -> list[str]:
        """Names of the tools the next answer should call one of; [] to answer directly.

        ``required``: a call must be made (``tool_choice="required"``); return the
        fitting tools, never [].
        """
        ...


class EmbeddingToolRouter:
    """Routes by cosine similarity between the latest request and each tool's description.

    Example::

        router = EmbeddingToolRouter()  # all-MiniLM-L6-v2, offline
        router.route([HumanMessage("What is 3 * 4?")], convert_tools([calculator]))
        # -> ["calculator"]
    """

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        threshold: float = 0.27,
        margin: float = 0.1,
        answer_after_tool_result: bool = True,
    ) -> None:
        """Args:
        embedder: any :class:`~langchain_pad.embeddings.Embedder`; default MiniLM.
        threshold: the least similarity at which a tool is called.
        margin: tools within this much of the best one stay callable too (the
            grammar lets the model choose among them).
        answer_after_tool_result: when the conversation ends with a tool result,
            answer in prose instead of calling again; a small model otherwise tends to
            call the same tool over and over.
        """
        self._embedder = embedder
        self.threshold = threshold
        self.margin = margin
        self.answer_after_tool_result = answer_after_tool_result
        self._tool_vectors: dict[str, list[float]] = {}

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from langchain_pad.embeddings import SentenceTransformerEmbedder

            self._embedder = SentenceTransformerEmbedder()
        return self._embedder

    def scores(self, request: str, specs: Sequence[ToolSpec]) -> dict[str, float]:
        """Similarity of ``request`` to each tool, by name."""
        texts = [_tool_text(s) for s in specs]
        missing = [t for t in texts if t not in self._tool_vectors]
        if missing:
            for text, vector in zip(missing, self.embedder.embed(missing), strict=True):
                self._tool_vectors[text] = [float(x) for x in vector]
        query = [float(x) for x in self.embedder.embed([request])[0]]
        return {
            s.name: sum(q * v for q, v in zip(query, self._tool_vectors[t], strict=True))
            for s, t in zip(specs, texts, strict=True)
        }

    def route(
        self, messages: Sequence[BaseMessage], specs: Sequence[ToolSpec], *, required: bool = False
    ) -> list[str]:
        if not specs:
            return []
        request = _latest_request(messages)
        if required:
            if not request or len(specs) == 1:
                return [s.name for s in specs]
        elif not request or (
            self.answer_after_tool_result and messages and isinstance(messages[-1], ToolMessage)
        ):
            return []
        scores = self.scores(request, specs)
        best = max(scores.values())
        if best < self.threshold and not required:
            return []
        return [name for name, score in scores.items() if score >= best - self.margin]


def _tool_text(spec: ToolSpec) -> str:
    return f"{spec.name.replace('_', ' ')}: {spec.description}".strip()


def _latest_request(messages: Sequence[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message_text(message)
    return ""


def answer_grammar(
    choice: ToolChoice,
    specs: Sequence[ToolSpec],
    messages: Sequence[BaseMessage],
    router: ToolRouter | None = None,
    *,
    max_string_length: int | None = DEFAULT_MAX_STRING_LENGTH,
) -> GrammarSpec | None:
    """The grammar of the next answer for this ``tool_choice`` (None: unconstrained).

    "none": None. A named tool: one call to it. "required": one call to one of the
    tools (the router's best ones, when there is a router: the 135M model otherwise
    tends to call the first tool listed). "auto": the router's tools (one call among
    them) or None to answer in prose; without a router,
    :func:`~langchain_pad.tools.auto_tool_grammar` lets the model's first token decide.

    ``max_string_length`` caps free argument strings; pick it so that a call fits the
    row's token budget (digits are one token each in SmolLM2's vocabulary), or a model
    that repeats inside a string runs out of budget before the call closes.
    """
    cap = max_string_length
    if choice.mode == "none" or not specs:
        return None
    if choice.mode == "required":
        if choice.name is None and router is not None:
            names = router.route(messages, specs, required=True)
            chosen = [s for s in specs if s.name in names] or list(specs)
            return tool_call_grammar(chosen, max_string_length=cap)
        return tool_call_grammar(specs, choice.name, max_string_length=cap)
    if router is None:
        return auto_tool_grammar(specs, max_string_length=cap)
    names = router.route(messages, specs)
    if not names:
        return None
    return tool_call_grammar([s for s in specs if s.name in names], max_string_length=cap)
