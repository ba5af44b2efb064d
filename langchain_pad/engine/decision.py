"""The decision step of the token loop: which token each row that needs one takes.

Per step, for the rows due a decision (rows fast-forwarding a grammar's forced tokens
are not, see :mod:`langchain_pad.engine.forcing`): repetition rules on the full
vocabulary; the grammar masks; the top-K candidates and their base log-probs; the
guide session's scores (PAD); greedy argmax, or temperature + top-p and a seeded
draw. A row whose own pick fails is reported, not raised, so its batch goes on.

A mixin of :class:`~langchain_pad.engine.loop.DecodingEngine` (it reads the engine's
``vocab_size``), kept apart so the loop reads as forward passes and rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langchain_pad.engine.guidance import DecodingStep, GuideSession, StepGuide

if TYPE_CHECKING:
    import torch

    from langchain_pad.engine.loop import _Row
    from langchain_pad.records import PADStepRecord

__all__ = ["Decisions", "RowFailedError", "top_candidates"]


class RowFailedError(RuntimeError):
    """One row of a batch could not be decoded; the other rows of its batch go on."""


def top_candidates(score_logprobs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``k`` best scores and token ids, best first, column 0 the token greedy
    decoding picks: of tied best scores, the lowest id (``argmax``'s first maximum).

    ``topk`` orders tied scores as it likes, and differently for different ``k``: a
    plain row (``k = 1``) and a PAD row (``k = 10``) took different tokens at an exact
    tie, and ties are common where logits come from bfloat16 or int8 layers (exact-zero
    steering then left plain decoding after a few sentences). Only column 0 is set
    here; the pick's own argmax over the candidates then agrees with plain decoding.
    """
    import torch

    if k == 1:
        best, ids = score_logprobs.max(dim=-1, keepdim=True)  # first maximum
        return best, ids
    scores, ids = score_logprobs.topk(k, dim=-1)
    tied = scores == scores[:, :1]
    lowest = ids.masked_fill(~tied, torch.iinfo(ids.dtype).max).argmin(dim=1)  # [B]
    if bool((lowest != 0).any()):
        rows = torch.arange(len(ids))
        first_id, first_score = ids[:, 0].clone(), scores[:, 0].clone()
        ids[:, 0], scores[:, 0] = ids[rows, lowest], scores[rows, lowest]
        ids[rows, lowest], scores[rows, lowest] = first_id, first_score
    return scores, ids


class Decisions:
    """The decision step (top-K, guide scores, pick) for the engine's rows."""

    vocab_size: int
    _exempt_ids: frozenset[int] | None = None
    """Token ids the repetition penalty skips (``_unpenalized``), read once."""

    def _decide(
        self,
        rows: list[_Row],
        logits: torch.Tensor,
        session: GuideSession | None,
        guide: StepGuide | None,
        failed: dict[int, Exception],
        forced: dict[int, list[int]],
    ) -> dict[int, tuple[int, float, PADStepRecord | None]]:
        """The decision step for the rows that need one: ``{position: (id, logprob, record)}``.

        Rows with tokens still to feed, and rows whose grammar forces what comes next,
        need none; the others are decided together (top-K, guide scores, pick).
        """
        import torch

        decide = [p for p, row in enumerate(rows) if not row.queue and p not in forced]
        if not decide:
            return {}
        whole = len(decide) == len(rows)
        sub_failed: dict[int, Exception] = {}
        ids, logprobs, records = self._choose(
            [rows[p] for p in decide],
            logits if whole else logits[decide],
            session,
            guide,
            sub_failed,
            None if whole else torch.tensor(decide, dtype=torch.long),
        )
        for i, exc in sub_failed.items():
            failed[decide[i]] = exc
        id_list, logprob_list = ids.tolist(), logprobs.tolist()
        return {
            p: (id_list[i], logprob_list[i], records[i] if records is not None else None)
            for i, p in enumerate(decide)
            if i not in sub_failed
        }

    def _choose(
        self,
        rows: list[_Row],
        logits: torch.Tensor,
        session: GuideSession | None,
        guide: StepGuide | None,
        failed: dict[int, Exception],
        positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[PADStepRecord | None] | None]:
        """Pick one token per row; return ids, their base log-probs and guide records.

        ``rows`` are the wave's rows at ``positions`` (None: all of them). Rows whose
        pick fails are put in ``failed`` (by index into ``rows``) and get token 0.
        """
        import torch

        base_logprobs = torch.log_softmax(logits, dim=-1)
        processed = self._apply_repetition_rules(rows, logits)
        score_logprobs = (
            base_logprobs if processed is logits else torch.log_softmax(processed, dim=-1)
        )
        allowed = self._grammar_masks(rows, failed)
        if allowed is not None:
            # before the candidates are taken: PAD only ever scores what the grammar
            # allows (picks and samples renormalize over the candidates, so masking the
            # log-probs needs no second softmax over the vocabulary)
            score_logprobs = score_logprobs.masked_fill(~allowed, float("-inf"))
        per_row_k = [self._candidate_count(r, guide) for r in rows]
        k = max(per_row_k)
        scores, candidate_ids = top_candidates(score_logprobs, k)
        candidate_base = base_logprobs.gather(1, candidate_ids)
        if session is not None:
            scores = session.score(
                DecodingStep(
                    candidate_ids=candidate_ids,
                    base_logprobs=candidate_base,
                    scores=scores,
                    payloads=[r.request.guidance for r in rows],
                    rows=positions,
                )
            )
        if any(kr < k for kr in per_row_k):
            limits = torch.tensor(per_row_k).unsqueeze(1)
            beyond = torch.arange(k).unsqueeze(0) >= limits
            scores = scores.masked_fill(beyond, float("-inf"))
        # +inf or NaN can only come from a guide's arithmetic on one row's values (a huge
        # beta, a broken reward model): that row fails, the others are decoded as usual.
        broken = (torch.isnan(scores) | (scores == float("inf"))).any(dim=1).tolist()
        if not any(broken) and all(r.params.greedy for r in rows):
            # all-greedy batch: one argmax for every row (the same first-maximum
            # tie-break as the per-row pick), no per-row Python in the step
            chosen = scores.argmax(dim=1)
        else:
            chosen = self._pick_rows(rows, scores, broken, failed)
        records = session.records(chosen) if session is not None else None
        rows_index = torch.arange(len(rows))
        return (
            candidate_ids[rows_index, chosen],
            candidate_base[rows_index, chosen],
            records,
        )

    def _pick_rows(
        self,
        rows: list[_Row],
        scores: torch.Tensor,
        broken: list[bool],
        failed: dict[int, Exception],
    ) -> torch.Tensor:
        """Each row's pick; rows with non-finite scores or a failing sampler go to ``failed``."""
        import torch

        chosen = torch.zeros(len(rows), dtype=torch.long)
        for position, row in enumerate(rows):
            if broken[position]:
                failed[position] = RowFailedError(
                    "the guided scores of this request are not finite numbers; lower its "
                    "beta or its preference weights."
                )
                continue
            try:
                chosen[position] = self._pick(row, scores[position])
            except Exception as exc:  # this row's own failure: the others go on
                failed[position] = _row_error(exc)
        return chosen

    def _candidate_count(self, row: _Row, guide: StepGuide | None) -> int:
        if row.params.top_k is not None:
            return min(row.params.top_k, self.vocab_size)
        if row.guided and guide is not None:
            return min(guide.default_candidates, self.vocab_size)
        return 1 if row.params.greedy else self.vocab_size

    def _pick(self, row: _Row, scores: torch.Tensor) -> int:
        """Greedy argmax, or temperature + top-p over the candidates, then a seeded draw."""
        import torch
        from transformers import TemperatureLogitsWarper, TopPLogitsWarper

        if row.params.greedy:
            return int(scores.argmax())
        warped = scores.unsqueeze(0)
        warped = TemperatureLogitsWarper(row.params.temperature)(None, warped)
        if row.params.top_p < 1.0:
            warped = TopPLogitsWarper(row.params.top_p)(None, warped)
        probs = torch.softmax(warped, dim=-1)
        return int(torch.multinomial(probs, 1, generator=row.generator)[0, 0])

    def _apply_repetition_rules(self, rows: list[_Row], logits: torch.Tensor) -> torch.Tensor:
        import torch

        if all(r.params.repetition_penalty == 1.0 for r in rows):
            return logits
        # transformers' RepetitionPenaltyLogitsProcessor, for all rows at once: a token
        # already seen has its logit divided by the penalty (multiplied, when negative).
        # Each row's seen set is kept as a mask updated a token at a time, so a long
        # prompt is read once, not at every step.
        seen = torch.stack([self._seen(row) for row in rows])
        penalty = torch.tensor(
            [r.params.repetition_penalty for r in rows], dtype=logits.dtype
        ).unsqueeze(1)
        penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
        return torch.where(seen, penalized, logits)

    def _seen(self, row: _Row) -> torch.Tensor:
        import torch

        if row.params.repetition_penalty == 1.0:
            return torch.zeros(self.vocab_size, dtype=torch.bool)
        exempt = self._unpenalized()
        if row.seen is None:
            row.seen = torch.zeros(self.vocab_size, dtype=torch.bool)
            ids = [t for t in row.request.prompt_ids if t not in exempt and t < self.vocab_size]
            row.seen[ids] = True
        fresh = [t for t in row.token_ids[row.seen_upto :] if t not in exempt]
        if fresh:
            row.seen[fresh] = True
        row.seen_upto = len(row.token_ids)
        return row.seen

    def _unpenalized(self) -> frozenset[int]:
        """Tokens the repetition penalty leaves alone: whitespace only (newlines, spaces).

        Lists, numbered steps and paragraphs repeat their line breaks by design; penalized,
        a counted list loses them ("12345678910..."). llama.cpp leaves newlines out of
        its penalty by default for the same reason. Read from the tokenizer once."""
        if self._exempt_ids is not None:
            return self._exempt_ids
        exempt: set[int] = set()
        tokenizer = getattr(self, "tokenizer", None)
        if tokenizer is not None:
            for token_id in range(int(getattr(self, "vocab_size", 0))):
                try:
                    text = tokenizer.decode([token_id])
                except Exception:  # an id the tokenizer cannot decode on its own
                    continue
                if text and not text.strip():
                    exempt.add(token_id)
        self._exempt_ids = frozenset(exempt)
        return self._exempt_ids

    def _grammar_masks(self, rows: list[_Row], failed: dict[int, Exception]) -> torch.Tensor | None:
        """``bool[rows, vocab]`` of the tokens each row's grammar allows; None: no grammars."""
        import torch

        if all(r.request.grammar is None for r in rows):
            return None
        mask = torch.ones(len(rows), self.vocab_size, dtype=torch.bool)
        for position, row in enumerate(rows):
            if row.request.grammar is None:
                continue
            try:
                row_mask = row.request.grammar.allowed_mask()
                mask[position, : row_mask.shape[0]] = row_mask
                mask[position, row_mask.shape[0] :] = False
            except Exception as exc:  # this row's own failure: the others go on
                failed[position] = _row_error(exc)
        return mask


def _row_error(exc: Exception) -> Exception:
    """A row's failure as its caller sees it: request errors as they are, others wrapped."""
    if isinstance(exc, ValueError | TypeError | RowFailedError):
        return exc
    error = RowFailedError(f"decoding this request failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
