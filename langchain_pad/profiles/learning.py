"""Recording feedback: keep a user's ``(prompt, chosen, rejected)`` and refit ``w_p``.

Every model forward pass happens *before* the write transaction: the new pair's
features, and the features of the user's older pairs that were computed under another
PersRM (their ``reward_model_id`` differs from the learner's). Inside the transaction
the pair is stored, the recomputed features are written back (so the next refit need
not compute them again), the learner refits over the user's pairs (a d-dimensional
fit: milliseconds), and the profile gets a new version. Writers of other users and
readers are not held up by a model, and the refit never runs one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langchain_pad.profiles.profile import ANCHOR_PREFIX, PreferenceProfile
from langchain_pad.profiles.protocol import FeedbackLearner, FeedbackRecord, ProfileStoreError

if TYPE_CHECKING:
    from langchain_pad.profiles.versioning import VersionedStore

__all__ = ["check_pair", "record_feedback"]

_ATTEMPTS = 5


class _NewStalePairs(Exception):
    """Stored pairs need features under the learner's PersRM: compute them, retry."""


def check_pair(user_id: str, chosen: str, rejected: str) -> None:
    """Refuse feedback that cannot teach anything, before any model is loaded or run."""
    if user_id.startswith(ANCHOR_PREFIX):
        raise ProfileStoreError(f"{user_id!r} is an anchor profile; it takes no feedback")
    if chosen == rejected:
        raise ValueError("chosen and rejected are the same text: no preference to learn")


def record_feedback(
    store: VersionedStore,
    learner: FeedbackLearner,
    user_id: str,
    prompt: str,
    chosen: str,
    rejected: str,
) -> PreferenceProfile:
    """Store the pair and the refit version in one transaction (see the module doc).

    A user without a profile gets one, starting from zero weights. Older pairs whose
    features belong to another PersRM are found inside the transaction: it is then
    rolled back, their features computed outside it, and the write tried again (a few
    attempts, in case another writer keeps adding such pairs meanwhile).
    """
    check_pair(user_id, chosen, rejected)
    ref = learner.reward_model
    record = FeedbackRecord(
        user_id=user_id,
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        features=learner.features(prompt, chosen, rejected),
        reward_model_id=ref.id,
    )
    fresh: dict[int, list[float] | None] = {}
    pending: list[FeedbackRecord] = []
    for _attempt in range(_ATTEMPTS):
        for old in pending:
            if old.id is not None and old.id not in fresh:
                fresh[old.id] = learner.features(old.prompt, old.chosen, old.rejected)
        try:
            return _refit_in_transaction(store, learner, record, fresh)
        except _NewStalePairs as stale:
            pending = list(stale.args[0])
    raise ProfileStoreError(
        f"feedback of {user_id!r} kept changing under another reward model; try again"
    )


def _refit_in_transaction(
    store: VersionedStore,
    learner: FeedbackLearner,
    record: FeedbackRecord,
    fresh: dict[int, list[float] | None],
) -> PreferenceProfile:
    """The write: no model runs here (features come precomputed in ``fresh``)."""
    ref = learner.reward_model
    user_id = record.user_id
    with store._transaction() as txn:
        stored_pairs = txn.feedback(user_id)
        missing = [
            r for r in stored_pairs if r.reward_model_id != ref.id and (r.id or 0) not in fresh
        ]
        if missing:
            raise _NewStalePairs(missing)
        current = txn.load(user_id)
        if current is None:
            base = PreferenceProfile(user_id=user_id, weights={}, reward_model=ref)
        else:
            if current.reward_model.axes != ref.axes:
                raise ProfileStoreError(
                    f"profile {user_id!r} has axes {list(current.reward_model.axes)} but "
                    f"the learner's reward model has {list(ref.axes)}"
                )
            base = current.model_copy(update={"reward_model": ref})
        pairs = []
        for old in stored_pairs:
            if old.reward_model_id != ref.id and old.id is not None:
                features = fresh[old.id]
                txn.set_features(old, features, ref.id)
                old = old.model_copy(update={"features": features, "reward_model_id": ref.id})
            pairs.append(old)
        version = (current.version if current is not None else 0) + 1
        new = record.model_copy(update={"profile_version": version})
        new = new.model_copy(update={"id": txn.add_feedback(new)})
        weights = learner.refit(base, [*pairs, new])
        stored = store._next_version(base, current, None, weights=weights, feedback_delta=1)
        txn.save(stored, "feedback", None)
    return stored
