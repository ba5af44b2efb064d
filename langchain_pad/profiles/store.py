"""Where the profile-store names used to live; kept so existing imports still work.

The store is split by job: :mod:`~langchain_pad.profiles.protocol` (protocol, errors,
records, transaction primitive), :mod:`~langchain_pad.profiles.versioning` (versioned
CRUD), :mod:`~langchain_pad.profiles.matcher` (matching),
:mod:`~langchain_pad.profiles.learning` (feedback),
:mod:`~langchain_pad.profiles.transfer` (export/import, integrity),
:mod:`~langchain_pad.profiles.async_twins` and :mod:`~langchain_pad.profiles.base`,
which assembles them.
"""

from langchain_pad.profiles.base import BaseProfileStore
from langchain_pad.profiles.protocol import (
    DescriptionRows,
    FeedbackLearner,
    FeedbackRecord,
    Kind,
    ProfileStore,
    ProfileStoreError,
    Transaction,
    UnknownProfileError,
    VersionConflictError,
)
from langchain_pad.profiles.transfer import EXPORT_FORMAT

__all__ = [
    "EXPORT_FORMAT",
    "BaseProfileStore",
    "DescriptionRows",
    "FeedbackLearner",
    "FeedbackRecord",
    "Kind",
    "ProfileStore",
    "ProfileStoreError",
    "Transaction",
    "UnknownProfileError",
    "VersionConflictError",
]
