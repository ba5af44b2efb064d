"""Test helpers and the contract every ``ProfileStore`` backend must pass.

A backend's test module subclasses :class:`ProfileStoreContract` and says how to
build a store::

    class TestMyStore(ProfileStoreContract):
        def make_store(self, tmp_path, **kwargs):
            return MyStore(..., **kwargs)

pytest then runs every contract test against it (``kwargs`` include ``embedder``,
``learner``, ``reward_model``, ``anchors`` and ``anchors_from``). The helpers need no
model weights (:mod:`.fakes`). Besides the versioning, matching, feedback and
export guarantees (:mod:`.contract`), every backend must rank anchors exactly as the
in-memory reference does, seed its reward model's anchors wherever it lives, and
run no model inside a write transaction (:mod:`.parity`).
"""

from langchain_pad.profiles.testing.contract import BaseContract
from langchain_pad.profiles.testing.fakes import (
    ANCHORS,
    AXES,
    REWARD_MODEL,
    CountingLearner,
    HashingEmbedder,
    anchor,
    fake_persrm,
    user,
)
from langchain_pad.profiles.testing.parity import (
    PARITY_ANCHORS,
    PARITY_QUERIES,
    ParityContract,
    WatchingLearner,
)

__all__ = [
    "ANCHORS",
    "AXES",
    "PARITY_ANCHORS",
    "PARITY_QUERIES",
    "REWARD_MODEL",
    "CountingLearner",
    "HashingEmbedder",
    "ProfileStoreContract",
    "WatchingLearner",
    "anchor",
    "fake_persrm",
    "user",
]


class ProfileStoreContract(ParityContract, BaseContract):
    """Behaviour every profile store must have. Subclass and define :meth:`make_store`."""
