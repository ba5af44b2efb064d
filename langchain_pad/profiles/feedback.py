"""Learning ``w_p`` from a user's feedback with the stage-2 fit.

:class:`Stage2Learner` is the :class:`~langchain_pad.profiles.protocol.FeedbackLearner`
that the stores use in production: for each new ``(prompt, chosen, rejected)`` it
computes stage 2's input ``D = F(chosen) - F(rejected)`` once with the frozen PersRM
(outside the store's write lock), and each refit is the d-dimensional logistic
regression of ``langchain_pad.training.stage2`` over all of the user's ``D``,
warm-started from the current weights: milliseconds, inside the write transaction.

Stage 2 scores whole answers: summed over a few hundred tokens, the reward differences
of a pair are large, so a handful of pairs is explained by a raw ``|w| < 1``; but
decoding adds ``beta * w . phi`` token by token, and only weights of the calibrated
poles' size (2-6 for the shipped PersRM) change greedy choices. So the learner stores
strengths in pole units (``langchain_pad.calibration``), not the raw fit: on each axis,
the fit's probability that this user prefers the high pole in a typical pair of theirs,
``P = sigmoid(beta * w_fit * mean|D|)``, is the share of that pole decoding gets:
``2P - 1 = tanh(beta * w_fit * mean|D| / 2)``, in ``(-1, 1)``. A consistent user reaches
the pole, a contradictory one stays near zero, and no strength leaves the calibrated
(fluent) range, whatever the PersRM's raw scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_pad.profiles.profile import PreferenceProfile, RewardModelRef
from langchain_pad.profiles.protocol import FeedbackRecord

if TYPE_CHECKING:
    from langchain_pad.reward_model import PersonalizedRewardModel
    from langchain_pad.runtime import PADRuntime

__all__ = ["Stage2Learner", "contrast_weights"]


def contrast_weights(
    weights: Mapping[str, float], axis: str, magnitude: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Two ``w_p`` to show a user side by side to learn about one axis: the current
    weights with ``axis`` pushed to each pole. Varying one axis per question makes each
    answer to it informative about that axis alone."""
    if axis not in weights:
        raise ValueError(f"unknown axis {axis!r}; the weights have {sorted(weights)}.")
    if not (magnitude > 0 and math.isfinite(magnitude)):
        raise ValueError(f"magnitude must be a finite number > 0, got {magnitude!r}.")
    low, high = dict(weights), dict(weights)
    low[axis], high[axis] = -magnitude, magnitude
    return low, high


class Stage2Learner:
    """Refits a user's ``w_p`` from all of their pairs with the stage-2 loss.

    ```python
    from langchain_pad.profiles import SQLiteProfileStore, Stage2Learner

    learner = Stage2Learner(reward_model, tokenizer, reward_model_dir="path/to/persrm")
    store = SQLiteProfileStore(learner=learner)
    profile = store.record_feedback("ana", "Explain DNS.", "Short answer...", "Long answer...")
    ```

    ``reward_model_dir`` gives the profiles the saved model's id; without it, the id is
    the in-memory model's backbone fingerprint plus its axes (fine for tests).

    ``steering``: ``"poles"`` (default; ``"anchors"`` is the former name) stores the fit
    as strengths in pole units (see the module docstring); ``None`` stores the stage-2
    fit's raw values clamped to ``[-1, 1]`` (for studying the fit itself, not for steering).
    """

    def __init__(
        self,
        reward_model: PersonalizedRewardModel,
        tokenizer: Any,
        *,
        reward_model_dir: str | Path | None = None,
        l2: float = 0.1,
        steering: str | None = "poles",
    ) -> None:
        if steering not in ("poles", "anchors", None):
            raise ValueError(f"steering must be 'poles' or None, got {steering!r}.")
        self.model = reward_model
        self.tokenizer = tokenizer
        self.l2 = l2
        self.steering = None if steering is None else "poles"
        """``"poles"``: the fit is stored as strengths in pole units; None: raw, clamped."""
        if reward_model_dir is not None:
            from langchain_pad.profiles.anchors import reward_model_ref

            ref = reward_model_ref(reward_model_dir)
            if list(ref.axes) != reward_model.axes:
                raise ValueError(
                    f"{reward_model_dir} has axes {list(ref.axes)}, the reward model given "
                    f"has {reward_model.axes}"
                )
        else:
            fingerprint = reward_model.config.backbone_fingerprint
            ref = RewardModelRef(id=f"mem-{fingerprint}", axes=tuple(reward_model.axes))
        self._ref = ref

    @classmethod
    def for_reward_model(
        cls,
        directory: str | Path = "default",
        *,
        dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        runtime: PADRuntime | None = None,
        **kwargs: Any,
    ) -> Stage2Learner:
        """The learner for a saved PersRM (``"default"``: the shipped one), on the base
        model it was trained for (its config's ``backbone``).

        The PersRM comes from ``runtime`` (default: the shared runtime of that base
        model), so a store learning from feedback and a chat model decoding with the
        same PersRM hold it once. What a store uses when no learner is given; ``kwargs``
        go to :class:`Stage2Learner` (``l2``, ``steering``)."""
        import json

        from langchain_pad.models import resolve_reward_model
        from langchain_pad.runtime import PADRuntime

        path = Path(resolve_reward_model(str(directory)))
        config = json.loads((path / "persrm_config.json").read_text(encoding="utf-8"))
        runtime = runtime or PADRuntime.shared(str(config["backbone"]), dtype)
        reward_model = runtime.reward_model(path)
        return cls(reward_model, runtime.loaded.tokenizer, reward_model_dir=path, **kwargs)

    @property
    def reward_model(self) -> RewardModelRef:
        return self._ref

    def features(self, prompt: str, chosen: str, rejected: str) -> list[float] | None:
        """Stage 2's input for one pair: ``F(chosen) - F(rejected)``, ``[d]``."""
        from langchain_pad.training.pairs import PreferencePair
        from langchain_pad.training.stage2 import pair_feature_differences

        pair = PreferencePair(prompt, chosen, rejected)
        differences = pair_feature_differences(self.model, [pair], self.tokenizer)
        return [float(v) for v in differences[0]]

    def refit(
        self, profile: PreferenceProfile, feedback: Sequence[FeedbackRecord]
    ) -> Mapping[str, float]:
        """Fit ``w_p`` on every pair of the user, starting from the current weights."""
        import torch

        from langchain_pad.training.stage2 import fit_weights_from_features

        rows = []
        for record in feedback:
            features = record.features
            if features is None or record.reward_model_id != self._ref.id:
                features = self.features(record.prompt, record.chosen, record.rejected)
            rows.append(features)
        differences = torch.tensor(rows, dtype=torch.float32)
        start = [float(profile.weights.get(axis, 0.0)) for axis in self.model.axes]
        spread = differences.abs().mean(dim=0).clamp(min=1e-6).tolist()
        if self.steering is not None:  # warm start: the current strengths, on the fit's scale
            start = [self._unsteer(w, s) for w, s in zip(start, spread, strict=True)]
        w, _loss = fit_weights_from_features(
            differences, beta=self.model.beta, l2=self.l2, init=start
        )
        fitted = [float(v) for v in w]
        if self.steering is not None:
            fitted = [self._steer(v, s) for v, s in zip(fitted, spread, strict=True)]
        else:
            fitted = [max(-1.0, min(1.0, v)) for v in fitted]
        return dict(zip(self.model.axes, fitted, strict=True))

    def _steer(self, fitted: float, spread: float) -> float:
        return math.tanh(self.model.beta * fitted * spread / 2)  # 2P - 1

    def _unsteer(self, strength: float, spread: float) -> float:
        share = max(-0.999, min(0.999, strength))
        return 2 * math.atanh(share) / (self.model.beta * spread)
