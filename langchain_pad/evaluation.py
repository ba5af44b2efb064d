"""Decoding and fluency measurements shared by training calibration and the benchmarks.

``decode_conditions`` runs many (prompt, system prompt, preference) rows through one
engine in batches, each row with its own ``w_p`` or none; ``perplexities`` scores any
answer under the *base* model given the plain user prompt, the fluency check PAD must
pass (a reward that wins by breaking the language is not alignment).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from langchain_pad.engine import GenerationOutput
    from langchain_pad.models import LoadedModel
    from langchain_pad.reward_model import PersonalizedRewardModel


@dataclass(frozen=True)
class DecodeRow:
    prompt: str
    system: str | None = None
    """A preference given in the prompt (the prompting baseline), or none."""
    weights: tuple[float, ...] | None = None
    """``w_p`` for PAD, or none for plain decoding."""


def user_prompt_ids(loaded: LoadedModel, prompt: str, system: str | None = None) -> list[int]:
    from langchain_pad._messages import Turn, render_prompt

    turns: list[Turn] = []
    if system:
        turns.append({"role": "system", "content": system})
    turns.append({"role": "user", "content": prompt})
    return render_prompt(loaded.tokenizer, turns)


def decode_conditions(
    loaded: LoadedModel,
    rows: Sequence[DecodeRow],
    *,
    reward_model: PersonalizedRewardModel | None = None,
    beta: float | None = None,
    max_new_tokens: int = 64,
    batch_size: int = 32,
    candidates: int = 10,
    repetition_penalty: float = 1.0,
    plausibility: float = 0.0,
    description: str = "decoding",
    show_progress: bool = True,
) -> list[GenerationOutput]:
    """Greedy answers for every row, PAD-guided where the row has weights.

    ``repetition_penalty`` applies to every row, plain and guided alike (a guard compared
    against a base without it would credit PAD with the guard's work); ``plausibility``
    is the PAD rows' floor (:class:`~langchain_pad.engine.pad.PADGuidance`).
    """
    from tqdm.auto import tqdm

    from langchain_pad.engine import DecodingEngine, GenerationRequest, SamplingParams
    from langchain_pad.engine.pad import PADGuidance, PADGuide

    if any(r.weights is not None for r in rows) and reward_model is None:
        raise ValueError("rows with weights need a reward_model.")
    engine = DecodingEngine(
        loaded.model,
        loaded.tokenizer,
        eos_token_ids=loaded.eos_token_ids,
        context_length=loaded.context_length,
    )
    guide = PADGuide(reward_model, default_candidates=candidates) if reward_model else None
    params = SamplingParams(max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty)
    outputs: list[GenerationOutput] = []
    with tqdm(total=len(rows), desc=description, unit="answer", disable=not show_progress) as bar:
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            requests = [
                GenerationRequest(
                    tuple(user_prompt_ids(loaded, row.prompt, row.system)),
                    params,
                    PADGuidance(row.weights, beta, plausibility=plausibility)
                    if row.weights is not None
                    else None,
                )
                for row in batch
            ]
            outputs.extend(engine.generate(requests, guide=guide))
            bar.update(len(batch))
    return outputs


def perplexities(
    loaded: LoadedModel, prompts: Sequence[str], answers: Sequence[Sequence[int]]
) -> list[float]:
    """Base-model perplexity of each answer's tokens after its plain user prompt."""
    model = loaded.model
    results: list[float] = []
    with torch.no_grad():
        for prompt, answer in zip(prompts, answers, strict=True):
            if not answer:
                results.append(math.nan)
                continue
            prompt_ids = user_prompt_ids(loaded, prompt)
            ids = torch.tensor([[*prompt_ids, *answer]])
            logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            picked = logprobs.gather(-1, torch.tensor(list(answer)).view(-1, 1)).squeeze(-1)
            results.append(float(torch.exp(-picked.mean())))
    return results


def distinct_ratio(token_ids: Sequence[int], n: int = 3) -> float:
    """Share of distinct n-grams: near 1 for normal text, low for looping repetition."""
    grams = [tuple(token_ids[i : i + n]) for i in range(len(token_ids) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


LOOP_NGRAM = 4
LOOP_REPEATS = 3


def words(text: str) -> list[str]:
    """Lower-cased words without surrounding punctuation: what a reader sees repeat."""
    return [w for w in (t.strip(".,;:!?\"'()[]*") for t in text.lower().split()) if w]


def loops(text: str, n: int = LOOP_NGRAM, repeats: int = LOOP_REPEATS) -> bool:
    """Whether some word n-gram occurs ``repeats`` times or more: the answer loops.

    A loop adds words and, when the looping word is jargon, raises a reading grade, so
    a judge alone would count it as a win; benchmarks count no win for a looping answer.
    """
    seq = words(text)
    counts: dict[tuple[str, ...], int] = {}
    for i in range(len(seq) - n + 1):
        gram = tuple(seq[i : i + n])
        counts[gram] = counts.get(gram, 0) + 1
        if counts[gram] >= repeats:
            return True
    return False


def distinct_words(text: str, n: int = 2) -> float:
    """Share of distinct word n-grams (distinct-n): near 1 for varied text."""
    seq = words(text)
    grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0
