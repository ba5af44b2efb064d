"""Preference profiles: per-user ``w_p``, stored durably, matched by description, learned
from feedback.

```python
from langchain_pad.profiles import PreferenceProfile, SQLiteProfileStore

store = SQLiteProfileStore()  # any path; seeds the shipped PersRM's anchor profiles
store.put(PreferenceProfile(user_id="ana", weights={"expertise": 1.0}))  # shipped PersRM
store.match("explain it like I'm five").weights  # nearest known preference(s)
```

``match`` ranks user profiles by cosine and the anchor poles by
:class:`~langchain_pad.profiles.ranking.AnchorRanker` (``rerank=False``: cosine alone).
"""

from langchain_pad.profiles.anchors import (
    Anchor,
    AnchorSet,
    anchor_profiles,
    default_reward_model_ref,
    load_anchors,
    reward_model_id,
    reward_model_ref,
)
from langchain_pad.profiles.backends.memory import InMemoryProfileStore
from langchain_pad.profiles.backends.sqlite import (
    PROFILES_ENV_VAR,
    SQLiteProfileStore,
    default_profiles_path,
)
from langchain_pad.profiles.base import BaseProfileStore
from langchain_pad.profiles.feedback import Stage2Learner, contrast_weights
from langchain_pad.profiles.matcher import ProfileMatcher
from langchain_pad.profiles.matching import EmbeddingIndex, MatchResult, ProfileMatch
from langchain_pad.profiles.profile import (
    ANCHOR_PREFIX,
    MAX_ABS_WEIGHT,
    PreferenceProfile,
    ProfileVersion,
    RewardModelRef,
)
from langchain_pad.profiles.protocol import (
    FeedbackLearner,
    FeedbackRecord,
    ProfileStore,
    ProfileStoreError,
    UnknownProfileError,
    VersionConflictError,
)
from langchain_pad.profiles.ranking import AnchorRanker

__all__ = [
    "ANCHOR_PREFIX",
    "MAX_ABS_WEIGHT",
    "PROFILES_ENV_VAR",
    "Anchor",
    "AnchorRanker",
    "AnchorSet",
    "BaseProfileStore",
    "EmbeddingIndex",
    "FeedbackLearner",
    "FeedbackRecord",
    "InMemoryProfileStore",
    "MatchResult",
    "PreferenceProfile",
    "ProfileMatch",
    "ProfileMatcher",
    "ProfileStore",
    "ProfileStoreError",
    "ProfileVersion",
    "RewardModelRef",
    "SQLiteProfileStore",
    "Stage2Learner",
    "UnknownProfileError",
    "VersionConflictError",
    "anchor_profiles",
    "contrast_weights",
    "default_profiles_path",
    "default_reward_model_ref",
    "load_anchors",
    "reward_model_id",
    "reward_model_ref",
]
