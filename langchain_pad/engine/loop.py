"""The token loop: batched decoding with a KV cache, step guides, and per-row finishing.

This is where a token is chosen. Each step:

1. one forward pass of the base model for every row still decoding (KV cache, left
   padding, attention mask), keeping only the last position's logits;
2. repetition rules (transformers' processors) on the full vocabulary;
3. the top-K candidates per row and their scores (base log-probs);
4. the guide session (PAD, if any) adjusts the candidates' scores;
5. greedy pick, or temperature + top-p (transformers' warpers) and a seeded sample;
6. text deltas (multi-byte safe), stop sequences, EOS, token budget; finished rows
   leave the batch and the cache.

Tokens a row's grammar forces (``"name": "`` in a tool call) skip steps 2-5: they are
taken as soon as they are known, and fed to the model several per forward where the
wave allows it (:mod:`langchain_pad.engine.forcing`).

It imports no LangChain: the chat model and the server are adapters around it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_pad.engine.decision import Decisions, RowFailedError, _row_error
from langchain_pad.engine.detokenizer import IncrementalDetokenizer
from langchain_pad.engine.forcing import forced_at_decision, forced_tokens, next_feed
from langchain_pad.engine.guidance import ForwardOutput, GuideSession, StepGuide
from langchain_pad.engine.stops import StopMatcher
from langchain_pad.engine.types import (
    FinishReason,
    GenerationOutput,
    GenerationRequest,
    SamplingParams,
    TokenEvent,
)

__all__ = ["DecodingEngine", "PromptTooLongError", "RowErrorSink", "RowFailedError", "WaveStats"]

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from langchain_pad.engine.compiled import CompiledSteps
    from langchain_pad.records import PADStepRecord


class PromptTooLongError(ValueError):
    """The prompt does not leave room for a single new token in the model's context."""


RowErrorSink = Callable[[int, Exception], None]
"""Receives ``(row, error)`` for a row that failed on its own; the row leaves the batch."""


@dataclass
class _Row:
    """Decoding state of one conversation."""

    index: int
    request: GenerationRequest
    detokenizer: IncrementalDetokenizer
    stops: StopMatcher
    generator: torch.Generator | None
    budget: int
    token_ids: list[int] = field(default_factory=list)
    queue: list[int] = field(default_factory=list)
    """Tokens taken (emitted, consumed by the grammar) but not yet fed to the model."""
    seen: torch.Tensor | None = None
    """``bool[vocab]``: the tokens the repetition penalty applies to (prompt and answer
    so far, whitespace aside), kept up to date a token at a time."""
    seen_upto: int = 0
    """How many of ``token_ids`` are already in ``seen``."""

    @property
    def params(self) -> SamplingParams:
        return self.request.params

    @property
    def guided(self) -> bool:
        return self.request.guidance is not None


@dataclass
class WaveStats:
    """What one call to :meth:`DecodingEngine.stream` did, for tests and benchmarks."""

    rows: int = 0
    forward_passes: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    forced_tokens: int = 0
    """Tokens taken because a grammar forced them, without a decision step."""


class DecodingEngine(Decisions):
    """Decodes several conversations at once on one causal LM."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        eos_token_ids: frozenset[int],
        context_length: int,
        fast_forward: bool = True,
        compiled_steps: CompiledSteps | None = None,
    ) -> None:
        self.model = model
        self.compiled_steps = compiled_steps
        """One-token steps through ``torch.compile`` (:mod:`langchain_pad.engine.compiled`);
        None: every forward pass eager."""
        self.fast_forward = fast_forward
        """Take grammar-forced tokens without a decision step, several per forward where
        the wave allows (greedy output is the same either way; off: for benchmarks)."""
        self.tokenizer = tokenizer
        self.eos_token_ids = eos_token_ids
        self.context_length = context_length
        pad = tokenizer.pad_token_id
        self.pad_token_id: int = int(pad if pad is not None else min(eos_token_ids, default=0))
        self.vocab_size = int(model.config.vocab_size)
        self.last_stats = WaveStats()
        import inspect

        # transformers 5 renamed `past_key_values` to `cache` (old name deprecated).
        params = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"

    # ------------------------------------------------------------------ public API

    def check_prompt(self, prompt_len: int) -> None:
        """Raise a clear error when a prompt leaves no room to generate."""
        if prompt_len >= self.context_length:
            raise PromptTooLongError(
                f"The prompt is {prompt_len} tokens long but the model's context holds "
                f"{self.context_length} tokens in all, prompt and answer together. "
                "Shorten the conversation (drop or summarize earlier messages)."
            )

    def generate(
        self, requests: Sequence[GenerationRequest], guide: StepGuide | None = None
    ) -> list[GenerationOutput]:
        """Decode to the end and return whole results, in request order."""
        outputs = [GenerationOutput([], "", [], "length", len(r.prompt_ids)) for r in requests]
        for event in self.stream(requests, guide=guide):
            out = outputs[event.row]
            out.token_ids.append(event.token_id)
            out.text += event.text
            out.logprobs.append(event.logprob)
            if event.record is not None:
                out.records.append(event.record)
            if event.finish_reason is not None:
                out.finish_reason = event.finish_reason
        return outputs

    def stream(
        self,
        requests: Sequence[GenerationRequest],
        *,
        guide: StepGuide | None = None,
        cancelled: Callable[[int], bool] | None = None,
        stats: WaveStats | None = None,
        on_error: RowErrorSink | None = None,
    ) -> Iterator[TokenEvent]:
        """Decode ``requests`` together, yielding each token of each row as it is chosen.

        ``cancelled(row)`` is polled every step; a cancelled row leaves the batch
        silently. Rows finish independently; the last event of a row carries its
        ``finish_reason``. Counters go to ``stats`` (and ``last_stats``) as they happen.

        A failure that belongs to one row (its sampler, its stop matching, a guide
        score that is not finite) goes to ``on_error(row, error)`` and only that row
        leaves the batch; without ``on_error`` it is raised. Failures of the batched
        forward pass itself end the whole call.
        """
        import torch

        if not requests:
            return
        for request in requests:
            self.check_prompt(len(request.prompt_ids))
        with torch.inference_mode():
            yield from self._run(
                requests,
                guide,
                cancelled or (lambda _row: False),
                stats or WaveStats(),
                on_error or _raise,
            )

    # ------------------------------------------------------------------ the loop

    def _run(
        self,
        requests: Sequence[GenerationRequest],
        guide: StepGuide | None,
        cancelled: Callable[[int], bool],
        stats: WaveStats,
        on_error: RowErrorSink,
    ) -> Iterator[TokenEvent]:
        import torch

        rows = [self._new_row(i, r) for i, r in enumerate(requests)]
        stats.rows = len(rows)
        self.last_stats = stats
        session: GuideSession | None = None
        if guide is not None and any(r.guided for r in rows):
            session = guide.start([r.request.guidance for r in rows])
        needs_hidden = session is not None and guide is not None and guide.needs_hidden_states
        failed: dict[int, Exception] = {}

        input_ids, attention_mask = self._left_pad([list(r.request.prompt_ids) for r in rows])
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        cache = self._new_cache()
        is_prefill = True
        while rows:
            forward = self.model if self.compiled_steps is None else self.compiled_steps.forward
            out = forward(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=True,
                logits_to_keep=1,
                output_hidden_states=needs_hidden,
                **{self._cache_kwarg: cache},
            )
            stats.forward_passes += 1
            stats.batch_sizes.append(len(rows))
            if session is not None:
                session.observe(
                    ForwardOutput(
                        hidden_states=tuple(out.hidden_states) if needs_hidden else (),
                        attention_mask=attention_mask,
                        position_ids=position_ids,
                        is_prefill=is_prefill,
                    )
                )
            is_prefill = False
            logits = out.logits[:, -1, :].float()
            forced = forced_at_decision(rows) if self.fast_forward else {}
            picks = self._decide(rows, logits, session, guide, failed, forced)

            keep: list[int] = []
            for position, row in enumerate(rows):
                if cancelled(row.index):
                    continue
                if position in failed:
                    on_error(row.index, failed.pop(position))
                    continue
                try:
                    events = self._take(row, picks.get(position), forced.get(position, []), stats)
                except Exception as exc:  # this row's own failure: the others go on
                    on_error(row.index, _row_error(exc))
                    continue
                yield from events
                if not events or events[-1].finish_reason is None:
                    keep.append(position)
            failed.clear()
            if not keep:
                break
            if len(keep) < len(rows):
                index = torch.tensor(keep, dtype=torch.long)
                cache.batch_select_indices(index)
                attention_mask = attention_mask[index]
                position_ids = position_ids[index]
                if session is not None:
                    session.select_rows(index)
                rows = [rows[p] for p in keep]
            input_ids = next_feed(rows)
            width = input_ids.shape[1]
            attention_mask = torch.cat(
                [attention_mask, attention_mask.new_ones(len(rows), width)], dim=1
            )
            position_ids = position_ids[:, -1:] + torch.arange(1, width + 1)

    def _take(
        self,
        row: _Row,
        pick: tuple[int, float, PADStepRecord | None] | None,
        forced: list[int],
        stats: WaveStats,
    ) -> list[TokenEvent]:
        """This step's tokens of ``row``: its pick and what its grammar then forces.

        Forced tokens have no base log-prob and no guide record: no decision was made.
        They are queued to be fed to the model; a row with tokens still queued takes
        nothing this step.
        """
        events: list[TokenEvent] = []
        if pick is not None:
            events.append(self._event(row, *pick))
            if events[-1].finish_reason is None and self.fast_forward:
                forced = forced_tokens(row.request.grammar)
        for token_id in forced:
            if events and events[-1].finish_reason is not None:
                break
            events.append(self._event(row, token_id, None, None))
            stats.forced_tokens += 1
        if events:
            row.queue = [e.token_id for e in events]
        return events

    def _event(
        self, row: _Row, token_id: int, logprob: float | None, record: PADStepRecord | None
    ) -> TokenEvent:
        released, finish, token_text = self._advance(row, token_id)
        return TokenEvent(
            row=row.index,
            token_id=token_id,
            text=released,
            logprob=logprob,
            finish_reason=finish,
            record=record,
            token_text=token_text,
        )

    def _advance(self, row: _Row, token_id: int) -> tuple[str, FinishReason | None, str]:
        """Record a chosen token.

        Returns the text it releases, why the row ends (if it does) and the token's own
        text (the detokenizer's delta, before stop sequences hold any of it back). A row
        whose grammar has ended stops here, without another forward pass.
        """
        row.token_ids.append(token_id)
        grammar = row.request.grammar
        if grammar is not None:
            grammar.consume(token_id)
            if token_id not in self.eos_token_ids and grammar.is_stopped():
                own = row.detokenizer.push(token_id) + row.detokenizer.flush()
                released, _ = row.stops.push(own)
                return released + row.stops.flush(), "stop", own
        if token_id in self.eos_token_ids:
            own = row.detokenizer.flush()
            return row.stops.flush() + own, "stop", own
        own = row.detokenizer.push(token_id)
        released, stopped = row.stops.push(own)
        if stopped:
            return released, "stop", own
        if len(row.token_ids) >= row.budget:
            tail_text = row.detokenizer.flush()
            tail, _ = row.stops.push(tail_text)
            return released + tail + row.stops.flush(), "length", own + tail_text
        return released, None, own

    # ------------------------------------------------------------------ helpers

    def _new_row(self, index: int, request: GenerationRequest) -> _Row:
        import torch

        generator = None
        if request.params.seed is not None and not request.params.greedy:
            generator = torch.Generator().manual_seed(request.params.seed)
        room = self.context_length - len(request.prompt_ids)
        return _Row(
            index=index,
            request=request,
            detokenizer=IncrementalDetokenizer(self.tokenizer, request.prompt_ids),
            stops=StopMatcher(request.params.stop),
            generator=generator,
            budget=min(request.params.max_new_tokens, room),
        )

    def _left_pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for i, seq in enumerate(sequences):
            ids[i, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[i, width - len(seq) :] = 1
        return ids, mask

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)


def _raise(_row: int, error: Exception) -> None:
    raise error
