"""Async twins of the profile-store operations.

Every backend's primitives are blocking (sqlite3, psycopg's sync API, a model for
embeddings and features), so each twin runs its sync operation in a worker thread:
an event loop (a server, a LangGraph graph) is never blocked by a store call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from langchain_pad.profiles.matching import DEFAULT_MARGIN, DEFAULT_THRESHOLD, DEFAULT_TOP_K

if TYPE_CHECKING:
    from langchain_pad.profiles.matching import MatchResult
    from langchain_pad.profiles.profile import PreferenceProfile, ProfileVersion
    from langchain_pad.profiles.protocol import (
        FeedbackLearner,
        FeedbackRecord,
        Kind,
        ProfileStore,
    )

__all__ = ["AsyncTwins"]


class AsyncTwins:
    """``aget``, ``aput``, ``amatch``, ... for a class with the sync operations."""

    async def aget(self: ProfileStore, user_id: str) -> PreferenceProfile | None:
        return await asyncio.to_thread(self.get, user_id)

    async def arequire(self: ProfileStore, user_id: str) -> PreferenceProfile:
        return await asyncio.to_thread(self.require, user_id)

    async def aput(
        self: ProfileStore,
        profile: PreferenceProfile,
        *,
        expected_version: int | None = None,
        reason: str = "put",
    ) -> PreferenceProfile:
        return await asyncio.to_thread(
            self.put, profile, expected_version=expected_version, reason=reason
        )

    async def adelete(self: ProfileStore, user_id: str) -> None:
        await asyncio.to_thread(self.delete, user_id)

    async def alist_profiles(
        self: ProfileStore, *, kind: Kind | None = None, limit: int | None = None, offset: int = 0
    ) -> list[PreferenceProfile]:
        return await asyncio.to_thread(self.list_profiles, kind=kind, limit=limit, offset=offset)

    async def ahistory(self: ProfileStore, user_id: str) -> list[ProfileVersion]:
        return await asyncio.to_thread(self.history, user_id)

    async def afeedback(self: ProfileStore, user_id: str) -> list[FeedbackRecord]:
        return await asyncio.to_thread(self.feedback, user_id)

    async def amatch(
        self: ProfileStore,
        description: str,
        *,
        top_k: int = DEFAULT_TOP_K,
        threshold: float = DEFAULT_THRESHOLD,
        margin: float = DEFAULT_MARGIN,
        kind: Kind | None = None,
        rerank: bool | None = None,
    ) -> MatchResult:
        return await asyncio.to_thread(
            self.match,
            description,
            top_k=top_k,
            threshold=threshold,
            margin=margin,
            kind=kind,
            rerank=rerank,
        )

    async def arecord_feedback(
        self: ProfileStore,
        user_id: str,
        prompt: str,
        chosen: str,
        rejected: str,
        *,
        learner: FeedbackLearner | None = None,
    ) -> PreferenceProfile:
        return await asyncio.to_thread(
            self.record_feedback, user_id, prompt, chosen, rejected, learner=learner
        )

    async def aexport_json(self: ProfileStore) -> dict[str, Any]:
        return await asyncio.to_thread(self.export_json)

    async def aimport_json(self: ProfileStore, data: Mapping[str, Any]) -> int:
        return await asyncio.to_thread(self.import_json, data)
