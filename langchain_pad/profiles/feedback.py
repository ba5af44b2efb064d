"""Learning ``w_p`` from a user's feedback with the stage-2 fit.

:class:`Stage2Learner` is the :class:`~langchain_pad.profiles.store.FeedbackLearner`
that the stores use in production: for each new ``(prompt, chosen, rejected)`` it
computes stage 2's input ``D = F(chosen) - F(rejected)`` once with the frozen PersRM
(outside the store's write lock), and each refit is the d-dimensional logistic
regression of ``langchain_pad.training.stage2`` over all of the user's ``D``,
warm-started from the current weights: milliseconds, inside the write transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_pad.profiles.profile import PreferenceProfile, RewardModelRef
from langchain_pad.profiles.store import FeedbackRecord

if TYPE_CHECKING:
    from langchain_pad.reward_model import PersonalizedRewardModel

__all__ = ["Stage2Learner"]


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
    """

    def __init__(
        self,
        reward_model: PersonalizedRewardModel,
        tokenizer: Any,
        *,
        reward_model_dir: str | Path | None = None,
        l2: float = 0.1,
    ) -> None:
        self.model = reward_model
        self.tokenizer = tokenizer
        self.l2 = l2
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
        start = self.model.weight_vector(profile.weights)
        w, _loss = fit_weights_from_features(
            differences, beta=self.model.beta, l2=self.l2, init=start
        )
        return dict(zip(self.model.axes, (float(v) for v in w), strict=True))
