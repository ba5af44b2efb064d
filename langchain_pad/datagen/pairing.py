"""Pairing sampled answers: per prompt, the most and least extreme samples, if judges agree.

With ``samples_per_pole`` N > 1 each pole has N answers per prompt. The high pole's
best-scoring answer (axis judge) is paired with the low pole's worst-scoring one: on a
135M model a pole's system prompt shifts the tone of few answers, so picking the extremes
of several samples keeps far more pairs than one sample per pole. A pair is kept only when
the axis judge moved by at least ``min_gap`` and, for an axis with a ``second_judge``,
that judge moved the same way by at least ``second_min_gap``. With N = 1 and no second
judge this is exactly the one-sample-per-pole filter of dataset v1.
"""

from __future__ import annotations

import statistics

from langchain_pad.axes import PreferenceAxis
from langchain_pad.datagen.dataset import AxisCounts, PairRecord, SampleRecord
from langchain_pad.datagen.prompts import PromptItem
from langchain_pad.judges import judge


def second_score(axis: PreferenceAxis, sample: SampleRecord) -> float | None:
    """The sample's second-judge score: recorded, or computed for samples made before."""
    if axis.second_judge is None:
        return None
    if sample.second_score is not None:
        return sample.second_score
    return judge(axis.second_judge)(sample.text)


def pick_extremes(
    high: list[SampleRecord], low: list[SampleRecord]
) -> tuple[SampleRecord, SampleRecord] | None:
    """The high pole's top-scoring and the low pole's bottom-scoring non-empty answers.

    Ties go to the lower sample index, so the choice does not depend on file order.
    """
    highs = sorted((s for s in high if s.text), key=lambda s: (-s.score, s.index))
    lows = sorted((s for s in low if s.text), key=lambda s: (s.score, s.index))
    if not highs or not lows:
        return None
    return highs[0], lows[0]


def pair_samples(
    prompts: list[PromptItem],
    axes: list[PreferenceAxis],
    samples: list[SampleRecord],
    *,
    samples_per_pole: int = 1,
) -> tuple[list[PairRecord], dict[str, AxisCounts]]:
    """Pair each prompt's poles; keep pairs both judges confirm by their minimum gaps."""
    by_key: dict[tuple[str, str, str], list[SampleRecord]] = {}
    for s in samples:
        if s.index < samples_per_pole:
            by_key.setdefault((s.prompt_id, s.axis, s.pole), []).append(s)
    pairs: list[PairRecord] = []
    counts: dict[str, AxisCounts] = {}
    for axis in axes:
        kept: list[PairRecord] = []
        gaps: list[float] = []
        first_passed = 0
        for prompt in prompts:
            picked = pick_extremes(
                by_key.get((prompt.id, axis.name, axis.high.name), []),
                by_key.get((prompt.id, axis.name, axis.low.name), []),
            )
            if picked is None:
                continue
            high, low = picked
            if high.text == low.text or high.score - low.score < axis.min_gap:
                continue
            first_passed += 1
            high_second, low_second = second_score(axis, high), second_score(axis, low)
            if (
                high_second is not None
                and low_second is not None
                and high_second - low_second < axis.second_min_gap
            ):
                continue
            gaps.append(high.score - low.score)
            kept.append(
                PairRecord(
                    id=f"{prompt.id}:{axis.name}",
                    axis=axis.name,
                    prompt_id=prompt.id,
                    split=prompt.split,
                    prompt=prompt.text,
                    chosen=high.text,
                    rejected=low.text,
                    chosen_complete=high.finish_reason == "stop",
                    rejected_complete=low.finish_reason == "stop",
                    judge=axis.judge,
                    chosen_score=high.score,
                    rejected_score=low.score,
                    second_judge=axis.second_judge,
                    chosen_second_score=high_second,
                    rejected_second_score=low_second,
                )
            )
        pairs.extend(kept)
        counts[axis.name] = AxisCounts(
            low=axis.low.name,
            high=axis.high.name,
            judge=axis.judge,
            min_gap=axis.min_gap,
            prompts=len(prompts),
            pairs_kept=len(kept),
            filter_rate=round(1 - len(kept) / len(prompts), 4) if prompts else 0.0,
            train_pairs=sum(p.split == "train" for p in kept),
            heldout_pairs=sum(p.split == "heldout" for p in kept),
            mean_gap=round(statistics.fmean(gaps), 4) if gaps else 0.0,
            samples_per_pole=samples_per_pole,
            second_judge=axis.second_judge,
            second_min_gap=axis.second_min_gap if axis.second_judge else None,
            first_judge_pairs=first_passed,
            second_judge_agreement=(
                round(len(kept) / first_passed, 4) if axis.second_judge and first_passed else None
            ),
        )
    return pairs, counts
