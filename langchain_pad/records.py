"""Typed per-token records: what PAD computed for each generated token, and their summary.

Two records, one per layer that owns them:

- :class:`PADStepRecord` is what the PAD guide reports for the chosen token of a row at
  one decoding step (``langchain_pad.engine.pad``). It is plain data: no torch, no
  LangChain, so every layer above the engine can read it.
- :class:`TokenRecord` is one token of one run as callbacks, traces, renderers and the
  server see it: the step record plus the run, position and texts.

Chunks of a LangChain stream carry the same fields as one-element lists (adding chunks
concatenates lists; LangChain refuses to merge two different floats under one key), so
:meth:`PADStepRecord.chunk_lists` writes them and :func:`record_at` reads them back.
:func:`summarize` is the one summary of a run's records, used by the chat model's last
chunk and by traces alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

__all__ = [
    "PADStepRecord",
    "RewardedToken",
    "TokenRecord",
    "record_at",
    "summarize",
]


@dataclass(frozen=True, slots=True)
class PADStepRecord:
    """The chosen token of one guided row at one step, as the PAD guide scored it."""

    reward: float | None
    """``beta * w_p . phi(s, a)`` of the chosen token: what PAD added to its score.

    None when the step was gated: the plausibility floor left only the base model's
    first choice, so no reward could change the pick and none was computed (a runtime
    built with ``gate=False`` scores every step)."""
    features: tuple[float, ...] | None
    """``phi_i(s, a)`` per axis, in the reward model's axis order (None: gated)."""
    base_logprob: float
    """``log pi_LM(a | s)`` of the chosen token under the base model."""
    base_rank: int
    """Rank of the chosen token among the base model's candidates (0 = its first choice)."""
    base_token_id: int
    """The base model's own first choice at this step."""

    @property
    def changed(self) -> bool:
        """Whether PAD picked a token other than the base model's first choice."""
        return self.base_rank != 0

    def chunk_lists(self) -> dict[str, list[Any]]:
        """The record as one-element lists, the form chunk metadata merges safely."""
        return {
            "reward": [self.reward],
            "features": [None if self.features is None else list(self.features)],
            "base_logprob": [self.base_logprob],
            "base_rank": [self.base_rank],
            "changed": [self.changed],
            "base_token_id": [self.base_token_id],
        }


@dataclass(frozen=True)
class TokenRecord:
    """One generated token and, for guided runs, what the reward model said about it.

    PAD fields are None for a run decoded without preference weights.
    """

    run_id: str
    index: int
    """Position of the token in the answer (0 = first generated token)."""
    token_id: int
    text: str
    """This token's own text; the texts of a run join into the decoded answer."""
    base_logprob: float | None = None
    """log pi_LM(token | prefix) under the base model, before any guidance."""
    reward: float | None = None
    """``beta * w_p . phi`` for the chosen token: what PAD added to its score."""
    features: tuple[float, ...] | None = None
    """``phi_i`` per preference axis, in the order of the run's axes."""
    base_rank: int | None = None
    """Rank of the chosen token among the base model's candidates (0 = its first choice)."""
    changed: bool = False
    """Whether guidance picked a token other than the base model's first choice."""
    base_token_id: int | None = None
    """The base model's own first choice at this step."""
    base_token_text: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["features"] = list(self.features) if self.features is not None else None
        return out


class RewardedToken(Protocol):
    """What :func:`summarize` reads: both record types above provide it."""

    @property
    def reward(self) -> float | None: ...
    @property
    def features(self) -> Sequence[float] | None: ...
    @property
    def changed(self) -> bool: ...


def summarize(
    records: Sequence[RewardedToken],
    axes: Sequence[str],
    weights: Mapping[str, float],
    beta: float | None,
) -> dict[str, Any]:
    """Mean reward (in all and per axis), mean ``phi`` per axis, share of tokens changed.

    Records without a reward (unguided tokens) are left out. The per-axis rewards add
    up to the mean reward because ``r = beta * sum_i w_i * phi_i``.
    """
    guided = [r for r in records if r.reward is not None]
    n = max(len(guided), 1)
    mean_phi = [
        _total(r.features[i] for r in guided if r.features and i < len(r.features)) / n
        for i in range(len(axes))
    ]
    changed = sum(bool(r.changed) for r in guided)
    scale = beta or 0.0
    return {
        "tokens": len(guided),
        "changed_tokens": changed,
        "changed_share": changed / n,
        "mean_reward": _total(r.reward or 0.0 for r in guided) / n,
        "mean_reward_by_axis": {
            axis: scale * weights.get(axis, 0.0) * phi
            for axis, phi in zip(axes, mean_phi, strict=True)
        },
        "mean_features": dict(zip(axes, mean_phi, strict=True)),
    }


def _total(values: Iterable[float]) -> float:
    """An exact sum where one exists; infinities and NaN propagate as in plain sums."""
    items = list(values)
    try:
        return math.fsum(items)
    except (ValueError, OverflowError):  # inf - inf, or an overflow of finite values
        return sum(items, 0.0)


def record_at(
    run_id: str,
    index: int,
    token_id: int,
    text: str,
    logprob: float | None,
    pad: Mapping[str, Sequence[Any]],
) -> TokenRecord:
    """The ``index``-th token from chunk-style lists (``pad`` empty for unguided runs)."""

    def at(key: str) -> Any:
        values = pad.get(key)
        return values[index] if values is not None and index < len(values) else None

    features = at("features")
    base_logprob = at("base_logprob")
    if base_logprob is None:
        base_logprob = logprob  # the same number; unguided runs only have this one
    return TokenRecord(
        run_id=run_id,
        index=index,
        token_id=int(token_id),
        text=str(text),
        base_logprob=_float_or_none(base_logprob),
        reward=_float_or_none(at("reward")),
        features=tuple(float(f) for f in features) if features is not None else None,
        base_rank=_int_or_none(at("base_rank")),
        changed=bool(at("changed") or False),
        base_token_id=_int_or_none(at("base_token_id")),
        base_token_text=at("base_token_text"),
    )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
