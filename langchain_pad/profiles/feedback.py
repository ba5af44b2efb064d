"""Learning ``w_p`` from a user's feedback with the stage-2 fit.

:class:`Stage2Learner` is the :class:`~langchain_pad.profiles.protocol.FeedbackLearner`
that the stores use in production: for each new ``(prompt, chosen, rejected)`` it
computes stage 2's input ``D = F(chosen) - F(rejected)`` once with the frozen PersRM
(outside the store's write lock), and each refit is the d-dimensional logistic
regression of ``langchain_pad.training.stage2`` over all of the user's ``D``,
warm-started from the current weights: milliseconds, inside the write transaction.

Stage 2 scores whole answers: summed over a few hundred tokens, the reward differences
of a pair are large, so a handful of pairs is explained by ``|w| < 1``; but decoding
adds ``beta * w . phi`` token by token, and only weights of the anchors' calibrated
size (4-8 for the shipped PersRM) change greedy choices. Stored as fitted, a learned
profile would point the right way and change nothing (measured: the answers did not
move). So, for a PersRM with calibrated anchors, the learner maps the fit onto the
anchors' scale: on each axis, the fit's probability that this user prefers the high
pole in a typical pair of theirs, ``P = sigmoid(beta * w_fit * mean|D|)``, decides
how much of that pole's anchor weight decoding gets: ``(2P - 1) * anchor``, i.e.
``anchor * tanh(beta * w_fit * mean|D| / 2)``. A consistent user reaches the anchor's
strength, a contradictory one stays near zero, and no weight leaves the calibrated
(fluent) range.
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

    ``steering``: ``"anchors"`` (default) maps the fit onto the calibrated anchor weights
    of ``reward_model_dir`` (see the module docstring) when it has ``anchors.json``; a
    mapping ``{axis: (low_pole_weight, high_pole_weight)}`` gives that scale directly
    (magnitudes); ``None`` stores the stage-2 fit as it is.
    """

    def __init__(
        self,
        reward_model: PersonalizedRewardModel,
        tokenizer: Any,
        *,
        reward_model_dir: str | Path | None = None,
        l2: float = 0.1,
        steering: str | Mapping[str, tuple[float, float]] | None = "anchors",
    ) -> None:
        self.model = reward_model
        self.tokenizer = tokenizer
        self.l2 = l2
        self.steering = _steering_scale(steering, reward_model.axes, reward_model_dir)
        """Per axis, the anchor weight magnitudes of its low and high pole; None: raw fit."""
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
        start = list(self.model.weight_vector(profile.weights))
        spread = differences.abs().mean(dim=0).clamp(min=1e-6).tolist()
        if self.steering is not None:  # warm start: the current weights, back on the fit's scale
            start = [
                self._unsteer(axis, w, s)
                for axis, w, s in zip(self.model.axes, start, spread, strict=True)
            ]
        w, _loss = fit_weights_from_features(
            differences, beta=self.model.beta, l2=self.l2, init=start
        )
        fitted = [float(v) for v in w]
        if self.steering is not None:
            fitted = [
                self._steer(axis, v, s)
                for axis, v, s in zip(self.model.axes, fitted, spread, strict=True)
            ]
        return dict(zip(self.model.axes, fitted, strict=True))

    def _steer(self, axis: str, fitted: float, spread: float) -> float:
        assert self.steering is not None
        low, high = self.steering[axis]
        share = math.tanh(self.model.beta * fitted * spread / 2)  # 2P - 1
        return share * (high if share > 0 else low)

    def _unsteer(self, axis: str, weight: float, spread: float) -> float:
        assert self.steering is not None
        low, high = self.steering[axis]
        share = max(-0.999, min(0.999, weight / (high if weight > 0 else low)))
        return 2 * math.atanh(share) / (self.model.beta * spread)


def _steering_scale(
    steering: str | Mapping[str, tuple[float, float]] | None,
    axes: Sequence[str],
    reward_model_dir: str | Path | None,
) -> dict[str, tuple[float, float]] | None:
    if steering is None:
        return None
    if isinstance(steering, str):
        if steering != "anchors":
            raise ValueError(f"steering must be 'anchors', a mapping or None, got {steering!r}.")
        if reward_model_dir is None:
            return None
        from langchain_pad.profiles.anchors import anchor_profiles

        anchors = anchor_profiles(reward_model_dir)
        if not anchors:
            return None
        scale: dict[str, list[float]] = {axis: [0.0, 0.0] for axis in axes}
        for anchor in anchors:
            for axis, weight in anchor.weights.items():
                if axis in scale and weight:
                    side = 1 if weight > 0 else 0
                    scale[axis][side] = max(scale[axis][side], abs(weight))
        steering = {axis: (low, high) for axis, (low, high) in scale.items()}
    result: dict[str, tuple[float, float]] = {}
    for axis in axes:
        if axis not in steering:
            raise ValueError(f"steering has no scale for axis {axis!r} (axes: {list(axes)}).")
        low, high = (float(v) for v in steering[axis])
        if not (low > 0 and high > 0 and math.isfinite(low) and math.isfinite(high)):
            raise ValueError(
                f"steering for {axis!r} needs two finite magnitudes > 0, got {(low, high)}; "
                "calibrate the anchors of both poles or pass steering=None."
            )
        result[axis] = (low, high)
    return result
