"""Moving a store's contents out and in (JSON export/import), and checking them.

An export holds every profile, its whole history and its feedback, so a store can be
moved between backends (SQLite -> PostgreSQL) or backed up as one JSON document;
:func:`check_integrity` says whether what a store holds is consistent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from langchain_pad.profiles.profile import (
    PreferenceProfile,
    ProfileVersion,
    stored_context,
    utcnow,
)
from langchain_pad.profiles.protocol import FeedbackRecord

if TYPE_CHECKING:
    from langchain_pad.profiles.versioning import VersionedStore

__all__ = ["EXPORT_FORMAT", "check_integrity", "export_json", "import_json", "integrity_report"]

EXPORT_FORMAT = "langchain-pad-profiles"


def export_json(store: VersionedStore) -> dict[str, Any]:
    """Every profile, its whole history and its feedback, as JSON-ready data."""
    return {
        "format": EXPORT_FORMAT,
        "format_version": 1,
        "embedding_model": store._meta("embedding_model"),
        "exported_at": utcnow().isoformat(),
        "profiles": [p.model_dump(mode="json") for p in store._list(None, None, 0)],
        "history": [h.model_dump(mode="json") for h in store._history(None)],
        "feedback": [f.model_dump(mode="json") for f in store._feedback(None)],
    }


def import_json(store: VersionedStore, data: Mapping[str, Any]) -> int:
    """Load an export. A new user arrives with its history and feedback as they were;
    an existing one gets the imported profile as a new version (reason ``import``)
    and the feedback it lacks. Returns the number of profiles imported."""
    if data.get("format") != EXPORT_FORMAT or data.get("format_version") != 1:
        raise ValueError(
            f"not a langchain-pad profiles export (format {data.get('format')!r}, "
            f"version {data.get('format_version')!r})"
        )
    store._require_writable()  # before embedding anything
    # exports from before pole units hold raw weights: convert them with the store's
    # calibration (a store without a reward model knows the shipped PersRM's)
    context: dict[str, Any] = getattr(store, "stored_context", None) or stored_context()
    profiles = [
        PreferenceProfile.model_validate(p, context=context) for p in data.get("profiles", [])
    ]
    history: dict[str, list[ProfileVersion]] = {}
    for item in data.get("history", []):
        entry = ProfileVersion.model_validate(item, context=context)
        history.setdefault(entry.user_id, []).append(entry)
    feedback: dict[str, list[FeedbackRecord]] = {}
    for item in data.get("feedback", []):
        record = FeedbackRecord.model_validate(item)
        feedback.setdefault(record.user_id, []).append(record)
    for profile in profiles:
        vectors = store._vectors_for(profile)
        with store._transaction() as txn:
            current = txn.load(profile.user_id)
            known = {_feedback_key(r) for r in txn.feedback(profile.user_id)}
            new_feedback = [
                r for r in feedback.get(profile.user_id, []) if _feedback_key(r) not in known
            ]
            past = sorted(history.get(profile.user_id, []), key=lambda h: h.version)
            if current is None and past and past[-1].version == profile.version:
                for entry in past[:-1]:
                    txn.write_history(entry)
                for record in new_feedback:
                    txn.add_feedback(record.model_copy(update={"id": None}))
                embedding = list(vectors[0][1]) if vectors else None
                restored = profile.model_copy(update={"embedding": embedding})
                txn.save(restored, past[-1].reason, vectors)
                continue
            version = (current.version if current is not None else 0) + 1
            for record in new_feedback:
                txn.add_feedback(record.model_copy(update={"id": None, "profile_version": version}))
            stored = store._next_version(
                profile, current, vectors, feedback_delta=len(new_feedback)
            )
            if current is None:
                stored = stored.model_copy(update={"feedback_count": len(new_feedback)})
            txn.save(stored, "import", vectors)
    return len(profiles)


def check_integrity(store: VersionedStore) -> list[str]:
    """Problems found (an empty list means the store is consistent); see
    :func:`integrity_report`."""
    backend, consistency = integrity_report(store)
    return backend + consistency


def integrity_report(store: VersionedStore) -> tuple[list[str], list[str]]:
    """``(backend findings, consistency findings)``; never raises on a damaged store.

    The backend's own check comes first (SQLite's ``integrity_check``: unreadable
    pages, missing tables). Then the contents: each profile's history runs
    1..version without gaps, the current profile equals its last history entry, and
    the feedback count equals the stored pairs, each pointing at an existing version.
    Contents that cannot be read are one backend finding (no paths, no user data);
    consistency findings name the user ids concerned.
    """
    backend = store._backend_integrity()
    try:
        return backend, _consistency(store)
    except Exception as exc:  # a damaged store: the finding is the answer, not an error
        cause = exc.__cause__ if isinstance(exc.__cause__, sqlite3.Error) else exc
        what = str(cause) if isinstance(cause, sqlite3.Error) else type(cause).__name__
        return [*backend, f"the stored profiles could not be read ({what})"], []


def _consistency(store: VersionedStore) -> list[str]:
    problems: list[str] = []
    history: dict[str, list[ProfileVersion]] = {}
    for entry in store._history(None):
        history.setdefault(entry.user_id, []).append(entry)
    feedback: dict[str, list[FeedbackRecord]] = {}
    for record in store._feedback(None):
        feedback.setdefault(record.user_id, []).append(record)
    for profile in store._list(None, None, 0):
        versions = [h.version for h in history.get(profile.user_id, [])]
        if versions != list(range(1, profile.version + 1)):
            problems.append(
                f"{profile.user_id!r}: history versions {versions[:5]}... do not run "
                f"1..{profile.version}"
            )
            continue
        last = history[profile.user_id][-1].profile
        if last is None or last.weights != profile.weights:
            problems.append(f"{profile.user_id!r}: current profile differs from its history")
        records = feedback.get(profile.user_id, [])
        if len(records) != profile.feedback_count:
            problems.append(
                f"{profile.user_id!r}: feedback_count {profile.feedback_count} but "
                f"{len(records)} pairs stored"
            )
        if any(not 1 <= r.profile_version <= profile.version for r in records):
            problems.append(f"{profile.user_id!r}: feedback points at a missing version")
    return problems


def _feedback_key(record: FeedbackRecord) -> tuple[str, str, str, str, str]:
    return (
        record.user_id,
        record.prompt,
        record.chosen,
        record.rejected,
        record.created_at.isoformat(),
    )
