"""The SQL layer the SQL backends share: every read and write of the profile tables.

SQLite (:mod:`.sqlite`) and PostgreSQL (``langchain_pad.integrations.postgres``)
keep the same five tables (``meta``, ``profiles``, ``history``, ``descriptions``,
``feedback``) and run the same statements; what differs is a small
:class:`SQLDialect`: the parameter mark, the collation that orders user ids by code
point, how "no limit" is spelled, and how JSON, vectors and times are passed and read
back. A backend supplies its connections, its schema and its transaction; this module
supplies :class:`SQLProfileStore` (the reads) and :class:`SQLTransaction` (the writes,
including the one delete tombstone path every backend shares).
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from langchain_pad.profiles.base import BaseProfileStore
from langchain_pad.profiles.profile import (
    ANCHOR_PREFIX,
    PreferenceProfile,
    ProfileVersion,
    stored_context,
)
from langchain_pad.profiles.protocol import DescriptionRows, FeedbackRecord, Kind

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

__all__ = ["FEEDBACK_COLUMNS", "SQLDialect", "SQLProfileStore", "SQLTransaction"]

FEEDBACK_COLUMNS = (
    "id, user_id, prompt, chosen, rejected, profile_version, created_at, features, reward_model_id"
)
_ANCHORS = "substr(user_id, 1, ?) = ?"
_ANCHOR_PARAMS = (len(ANCHOR_PREFIX), ANCHOR_PREFIX)


class SQLDialect:
    """SQLite's spelling; PostgreSQL's subclass overrides what differs."""

    mark = "?"
    """The parameter placeholder; statements here are written with ``?``."""
    collate = ""
    """Appended to ``ORDER BY user_id`` so user ids sort by code point everywhere."""
    no_limit: object = -1
    """The ``LIMIT`` value that means "no limit"."""

    def sql(self, statement: str) -> str:
        return statement if self.mark == "?" else statement.replace("?", self.mark)

    def json_param(self, value: Any) -> object:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def vector_param(self, vector: Sequence[float] | npt.NDArray[np.float32]) -> object:
        return np.asarray(vector, dtype=np.float32).tobytes()

    def vector_value(self, stored: Any) -> npt.NDArray[np.float32]:
        return np.frombuffer(stored, dtype=np.float32)

    def time_param(self, value: datetime) -> object:
        return value.isoformat()


def json_value(stored: Any) -> Any:
    """A JSON column as Python data (SQLite gives text, PostgreSQL's JSONB gives data)."""
    return json.loads(stored) if isinstance(stored, str | bytes) else stored


class SQLProfileStore(BaseProfileStore):
    """The reads of the profile tables, for any :class:`SQLDialect`.

    A subclass provides :meth:`_connection` (a DB-API connection whose ``execute``
    returns a cursor), :meth:`_transaction` (yielding a :class:`SQLTransaction`),
    :attr:`_dialect` and :attr:`_identity` (what tells this store's rows apart from
    another store's, for the index epoch).
    """

    _dialect: SQLDialect = SQLDialect()

    @abstractmethod
    def _connection(self) -> Any: ...

    @property
    @abstractmethod
    def _identity(self) -> tuple[object, ...]: ...

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[SQLTransaction]: ...

    def _query(self, statement: str, params: Sequence[object] = ()) -> list[Any]:
        cursor = self._connection().execute(self._dialect.sql(statement), tuple(params))
        rows: list[Any] = cursor.fetchall()
        return rows

    def _execute(self, statement: str, params: Sequence[object] = ()) -> None:
        self._connection().execute(self._dialect.sql(statement), tuple(params))

    def _profile(self, data: Any, embedding: Any) -> PreferenceProfile:
        return decode_profile(self._dialect, data, embedding, self.stored_context)

    # ------------------------------------------------------------------ reads

    def _read(self, user_id: str) -> PreferenceProfile | None:
        rows = self._query("SELECT data, embedding FROM profiles WHERE user_id = ?", (user_id,))
        return self._profile(rows[0][0], rows[0][1]) if rows else None

    def _read_many(self, user_ids: Sequence[str]) -> dict[str, PreferenceProfile]:
        unique = list(dict.fromkeys(user_ids))
        if not unique:
            return {}
        marks = ",".join("?" * len(unique))
        rows = self._query(
            f"SELECT user_id, data, embedding FROM profiles WHERE user_id IN ({marks})", unique
        )
        return {row[0]: self._profile(row[1], row[2]) for row in rows}

    def _list(self, kind: Kind | None, limit: int | None, offset: int) -> list[PreferenceProfile]:
        statement = "SELECT data, embedding FROM profiles"
        params: list[object] = []
        if kind is not None:
            statement += " WHERE kind = ?"
            params.append(kind)
        statement += f" ORDER BY user_id{self._dialect.collate} LIMIT ? OFFSET ?"
        params += [self._dialect.no_limit if limit is None else limit, offset]
        return [self._profile(row[0], row[1]) for row in self._query(statement, params)]

    def _count(self, kind: Kind | None) -> int:
        if kind is None:
            return int(self._query("SELECT count(*) FROM profiles")[0][0])
        return int(self._query("SELECT count(*) FROM profiles WHERE kind = ?", (kind,))[0][0])

    def _history(self, user_id: str | None) -> list[ProfileVersion]:
        statement = "SELECT user_id, version, reason, recorded_at, data FROM history"
        params: tuple[object, ...] = ()
        if user_id is not None:
            statement += " WHERE user_id = ?"
            params = (user_id,)
        rows = self._query(statement + f" ORDER BY user_id{self._dialect.collate}, version", params)
        return [
            ProfileVersion(
                user_id=row[0],
                version=row[1],
                reason=row[2],
                recorded_at=row[3],
                profile=None
                if row[4] is None
                else decode_profile(self._dialect, row[4], None, self.stored_context),
            )
            for row in rows
        ]

    def _feedback(self, user_id: str | None) -> list[FeedbackRecord]:
        statement = f"SELECT {FEEDBACK_COLUMNS} FROM feedback"
        params: tuple[object, ...] = ()
        if user_id is not None:
            statement += " WHERE user_id = ?"
            params = (user_id,)
        rows = self._query(statement + f" ORDER BY user_id{self._dialect.collate}, id", params)
        return [decode_feedback(row) for row in rows]

    def _description_state(self, anchors_only: bool = False) -> tuple[object, int]:
        epoch = self._query("SELECT value FROM meta WHERE key = 'desc_epoch'")[0][0]
        where, params = (f" WHERE {_ANCHORS}", _ANCHOR_PARAMS) if anchors_only else ("", ())
        max_id = self._query(f"SELECT max(id) FROM descriptions{where}", params)[0][0]
        return (*self._identity, str(epoch)), int(max_id or 0)

    def _description_rows(self, after_id: int, anchors_only: bool = False) -> DescriptionRows:
        where = f" AND {_ANCHORS}" if anchors_only else ""
        params = (after_id, *_ANCHOR_PARAMS) if anchors_only else (after_id,)
        rows = self._query(
            f"SELECT id, user_id, text, vector FROM descriptions WHERE id > ?{where} ORDER BY id",
            params,
        )
        if not rows:
            return [], [], [], np.zeros((0, 0), dtype=np.float32)
        vectors = np.stack([self._dialect.vector_value(r[3]) for r in rows])
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], vectors

    def _meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def _set_meta(self, key: str, value: str) -> None:
        with self._transaction() as txn:  # every write goes through the backend's guard
            txn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def _reembed_all(self, embed: Callable[[Sequence[str]], npt.NDArray[np.float32]]) -> None:
        rows = self._query("SELECT id, text FROM descriptions ORDER BY id")
        if not rows:
            return
        vectors = embed([r[1] for r in rows])
        with self._transaction() as txn:
            for row, vector in zip(rows, vectors, strict=True):
                txn.execute(
                    "UPDATE descriptions SET vector = ? WHERE id = ?",
                    (self._dialect.vector_param(vector), row[0]),
                )
            txn.bump_epoch()


class SQLTransaction:
    """The :class:`~langchain_pad.profiles.protocol.Transaction` primitives in SQL, on a
    connection already inside a transaction."""

    def __init__(
        self, connection: Any, dialect: SQLDialect, context: dict[str, Any] | None = None
    ) -> None:
        self.connection = connection
        self.dialect = dialect
        self.context = context

    def execute(self, statement: str, params: Sequence[object] = ()) -> Any:
        return self.connection.execute(self.dialect.sql(statement), tuple(params))

    def load(self, user_id: str) -> PreferenceProfile | None:
        row = self.execute(
            "SELECT data, embedding FROM profiles WHERE user_id = ?", (user_id,)
        ).fetchone()
        return None if row is None else decode_profile(self.dialect, row[0], row[1], self.context)

    def descriptions(self, user_id: str) -> list[str]:
        rows = self.execute(
            "SELECT text FROM descriptions WHERE user_id = ? ORDER BY id", (user_id,)
        ).fetchall()
        return [r[0] for r in rows]

    def save(
        self,
        profile: PreferenceProfile,
        reason: str,
        vectors: Sequence[tuple[str, Sequence[float]]] | None,
    ) -> None:
        data = self.dialect.json_param(profile.model_dump(mode="json", exclude={"embedding"}))
        embedding = (
            None if profile.embedding is None else self.dialect.vector_param(profile.embedding)
        )
        self.execute(
            "INSERT INTO profiles (user_id, kind, version, data, embedding) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
            "kind = excluded.kind, version = excluded.version, data = excluded.data, "
            "embedding = excluded.embedding",
            (profile.user_id, profile.kind, profile.version, data, embedding),
        )
        self._insert_history(profile.user_id, profile.version, reason, profile.updated_at, data)
        if vectors is not None:
            self._replace_descriptions(profile.user_id, vectors)

    def write_history(self, entry: ProfileVersion) -> None:
        data = (
            None
            if entry.profile is None
            else self.dialect.json_param(
                entry.profile.model_dump(mode="json", exclude={"embedding"})
            )
        )
        self._insert_history(entry.user_id, entry.version, entry.reason, entry.recorded_at, data)

    def _insert_history(
        self, user_id: str, version: int, reason: str, recorded_at: datetime, data: object
    ) -> None:
        self.execute(
            "INSERT INTO history (user_id, version, reason, recorded_at, data) "
            "VALUES (?, ?, ?, ?, ?)",
            (user_id, version, reason, self.dialect.time_param(recorded_at), data),
        )

    def _replace_descriptions(
        self, user_id: str, vectors: Sequence[tuple[str, Sequence[float]]]
    ) -> None:
        removed = self.execute("DELETE FROM descriptions WHERE user_id = ?", (user_id,)).rowcount
        if removed:
            self.bump_epoch()
        if vectors:
            self.connection.cursor().executemany(
                self.dialect.sql(
                    "INSERT INTO descriptions (user_id, text, vector) VALUES (?, ?, ?)"
                ),
                [(user_id, text, self.dialect.vector_param(vector)) for text, vector in vectors],
            )

    def bump_epoch(self) -> None:
        self.execute(
            "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) "
            "WHERE key = 'desc_epoch'"
        )

    def remove(self, user_id: str) -> None:
        self.execute("DELETE FROM profiles WHERE user_id = ?", (user_id,))
        self._replace_descriptions(user_id, [])

    def add_feedback(self, record: FeedbackRecord) -> int:
        row = self.execute(
            "INSERT INTO feedback (user_id, prompt, chosen, rejected, profile_version, "
            "created_at, features, reward_model_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "RETURNING id",
            (
                record.user_id,
                record.prompt,
                record.chosen,
                record.rejected,
                record.profile_version,
                self.dialect.time_param(record.created_at),
                None if record.features is None else self.dialect.json_param(record.features),
                record.reward_model_id,
            ),
        ).fetchone()
        return int(row[0]) if row else 0

    def feedback(self, user_id: str) -> list[FeedbackRecord]:
        rows = self.execute(
            f"SELECT {FEEDBACK_COLUMNS} FROM feedback WHERE user_id = ? ORDER BY id", (user_id,)
        ).fetchall()
        return [decode_feedback(row) for row in rows]

    def set_features(
        self, record: FeedbackRecord, features: list[float] | None, reward_model_id: str
    ) -> None:
        self.execute(
            "UPDATE feedback SET features = ?, reward_model_id = ? WHERE id = ?",
            (
                None if features is None else self.dialect.json_param(features),
                reward_model_id,
                record.id,
            ),
        )


def decode_profile(
    dialect: SQLDialect, data: Any, embedding: Any, context: dict[str, Any] | None = None
) -> PreferenceProfile:
    """A ``profiles``/``history`` row's data (and embedding) as a profile; ``context``
    converts rows saved before pole units (``profile.stored_context``)."""
    context = context if context is not None else stored_context()
    profile = (
        PreferenceProfile.model_validate_json(data, context=context)
        if isinstance(data, str | bytes)
        else PreferenceProfile.model_validate(data, context=context)
    )
    if embedding is not None:
        vector = dialect.vector_value(embedding)
        profile = profile.model_copy(update={"embedding": [float(v) for v in vector]})
    return profile


def decode_feedback(row: Sequence[Any]) -> FeedbackRecord:
    """A ``feedback`` row (:data:`FEEDBACK_COLUMNS`) as a record."""
    return FeedbackRecord(
        id=row[0],
        user_id=row[1],
        prompt=row[2],
        chosen=row[3],
        rejected=row[4],
        profile_version=row[5],
        created_at=row[6],
        features=None if row[7] is None else json_value(row[7]),
        reward_model_id=row[8],
    )
