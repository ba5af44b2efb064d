"""The default profile store: one SQLite file in the user's data directory.

What it guarantees:

- **Atomic writes.** Each operation is one transaction (``BEGIN IMMEDIATE``): a
  profile version, its history row, its description rows and a feedback pair are all
  written or none is. A process killed mid-write (even by SIGKILL) leaves the last
  committed state; SQLite's journal rolls the rest back when the file is next opened.
- **No lost updates.** ``BEGIN IMMEDIATE`` takes the write lock before reading, so the
  read-modify-write of a version (or of a feedback refit) is serialized across threads
  and processes; writers wait up to ``timeout`` seconds for each other.
  ``put(expected_version=)`` adds optimistic checks for callers that read earlier.
- **Durability.** WAL journal with ``synchronous=FULL`` by default: a committed write
  survives a crash of the process and of the machine. ``synchronous="NORMAL"`` is
  faster and still survives a process crash, but may lose the last commits on power loss.
- **Readers never block writers** (WAL); each thread uses its own connection.
- **History.** Every version of every profile stays in ``history``; nothing is
  overwritten without a trace.
- **Schema versions.** ``PRAGMA user_version`` records the schema; opening an older
  file migrates it in one transaction, a newer one is refused.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from langchain_pad.profiles.profile import PreferenceProfile, ProfileVersion, utcnow
from langchain_pad.profiles.store import (
    BaseProfileStore,
    DescriptionRows,
    FeedbackLearner,
    FeedbackRecord,
    Kind,
    ProfileStoreError,
)

if TYPE_CHECKING:
    from langchain_pad.embeddings import Embedder

__all__ = ["PROFILES_ENV_VAR", "SCHEMA_VERSION", "SQLiteProfileStore", "default_profiles_path"]

PROFILES_ENV_VAR = "LANGCHAIN_PAD_PROFILES"
"""Environment variable naming the SQLite file of the default store."""

_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE profiles (
    user_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    embedding BLOB
);
CREATE TABLE history (
    user_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    reason TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    data TEXT,
    PRIMARY KEY (user_id, version)
);
CREATE TABLE descriptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX descriptions_user ON descriptions (user_id);
CREATE TABLE feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    prompt TEXT NOT NULL,
    chosen TEXT NOT NULL,
    rejected TEXT NOT NULL,
    profile_version INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
INSERT INTO meta VALUES ('desc_epoch', '0');
"""

# v2: feedback keeps the pair's stage-2 features, so refits need no model forward.
_V2 = """
ALTER TABLE feedback ADD COLUMN features TEXT;
ALTER TABLE feedback ADD COLUMN reward_model_id TEXT;
CREATE INDEX feedback_user ON feedback (user_id, id);
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2)
"""``MIGRATIONS[i]`` takes a file from schema version ``i`` to ``i + 1``."""
SCHEMA_VERSION = len(MIGRATIONS)


def default_profiles_path() -> Path:
    """``$LANGCHAIN_PAD_PROFILES``, else ``<user data dir>/langchain-pad/profiles.sqlite3``."""
    override = os.environ.get(PROFILES_ENV_VAR)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("langchain-pad")) / "profiles.sqlite3"


def migrate(connection: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema to ``target`` in one transaction; returns the version found."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        found = int(connection.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise ProfileStoreError(
                f"this profile store uses schema version {found}, newer than this "
                f"langchain-pad understands ({SCHEMA_VERSION}): upgrade langchain-pad"
            )
        for version in range(found, target):
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    connection.execute(statement)
        if target > found:
            connection.execute(f"PRAGMA user_version = {int(target)}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return found


class SQLiteProfileStore(BaseProfileStore):
    """Profiles, their history and feedback in one SQLite file.

    ```python
    from langchain_pad.profiles import SQLiteProfileStore

    store = SQLiteProfileStore()  # ~/.local/share/langchain-pad/profiles.sqlite3
    store = SQLiteProfileStore("profiles.sqlite3", anchors_from="path/to/persrm")
    match = store.match("I'm a busy surgeon: bottom line first")
    ```

    ``anchors_from`` (a PersRM directory holding ``anchors.json``, or ``"default"``)
    seeds the reward model's anchor profiles; seeding is idempotent. ``"auto"`` seeds
    the shipped default PersRM's anchors into the default store (``path`` None), so a
    new user's ``preference=`` text matches out of the box, and nothing elsewhere.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        embedder: Embedder | None = None,
        learner: FeedbackLearner | None = None,
        anchors: Sequence[PreferenceProfile] = (),
        anchors_from: str | Path | None = "auto",
        timeout: float = 60.0,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        super().__init__(embedder=embedder, learner=learner)
        self.path = Path(path).expanduser() if path is not None else default_profiles_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._timeout = timeout
        self._synchronous = synchronous
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        connection = self._connection()
        connection.execute("PRAGMA journal_mode=WAL")
        migrate(connection)
        if anchors_from == "auto":
            anchors_from = _shipped_anchors() if path is None else None
        if anchors_from is not None:
            from langchain_pad.profiles.anchors import anchor_profiles

            anchors = [*anchors, *anchor_profiles(anchors_from)]
        if anchors:
            self.seed_anchors(anchors)

    # ------------------------------------------------------------------ connections

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise ProfileStoreError(f"the profile store {self.path} is closed")
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            connection.execute(f"PRAGMA synchronous={self._synchronous}")
            connection.execute("PRAGMA foreign_keys=ON")
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def close(self) -> None:
        with self._connections_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
            self._closed = True

    @contextmanager
    def _transaction(self) -> Iterator[_SQLiteTransaction]:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield _SQLiteTransaction(connection)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        cursor = self._connection().execute(sql, tuple(params))
        rows: list[sqlite3.Row] = cursor.fetchall()
        return rows

    # ------------------------------------------------------------------ reads

    def _read(self, user_id: str) -> PreferenceProfile | None:
        rows = self._query("SELECT data, embedding FROM profiles WHERE user_id = ?", (user_id,))
        return _profile(rows[0][0], rows[0][1]) if rows else None

    def _read_many(self, user_ids: Sequence[str]) -> dict[str, PreferenceProfile]:
        if not user_ids:
            return {}
        marks = ",".join("?" * len(user_ids))
        rows = self._query(
            f"SELECT user_id, data, embedding FROM profiles WHERE user_id IN ({marks})", user_ids
        )
        return {row[0]: _profile(row[1], row[2]) for row in rows}

    def _list(self, kind: Kind | None, limit: int | None, offset: int) -> list[PreferenceProfile]:
        sql = "SELECT data, embedding FROM profiles"
        params: list[object] = []
        if kind is not None:
            sql += " WHERE kind = ?"
            params.append(kind)
        sql += " ORDER BY user_id LIMIT ? OFFSET ?"
        params += [-1 if limit is None else limit, offset]
        return [_profile(row[0], row[1]) for row in self._query(sql, params)]

    def _count(self, kind: Kind | None) -> int:
        if kind is None:
            return int(self._query("SELECT count(*) FROM profiles")[0][0])
        return int(self._query("SELECT count(*) FROM profiles WHERE kind = ?", (kind,))[0][0])

    def _history(self, user_id: str | None) -> list[ProfileVersion]:
        sql = "SELECT user_id, version, reason, recorded_at, data FROM history"
        params: tuple[object, ...] = ()
        if user_id is not None:
            sql += " WHERE user_id = ?"
            params = (user_id,)
        rows = self._query(sql + " ORDER BY user_id, version", params)
        return [
            ProfileVersion(
                user_id=row[0],
                version=row[1],
                reason=row[2],
                recorded_at=row[3],
                profile=None if row[4] is None else PreferenceProfile.model_validate_json(row[4]),
            )
            for row in rows
        ]

    def _feedback(self, user_id: str | None) -> list[FeedbackRecord]:
        sql = (
            "SELECT id, user_id, prompt, chosen, rejected, profile_version, created_at, "
            "features, reward_model_id FROM feedback"
        )
        params: tuple[object, ...] = ()
        if user_id is not None:
            sql += " WHERE user_id = ?"
            params = (user_id,)
        return [_feedback(row) for row in self._query(sql + " ORDER BY user_id, id", params)]

    def _description_state(self) -> tuple[object, int]:
        epoch = self._query("SELECT value FROM meta WHERE key = 'desc_epoch'")[0][0]
        max_id = self._query("SELECT max(id) FROM descriptions")[0][0]
        return (str(self.path), epoch), int(max_id or 0)

    def _description_rows(self, after_id: int) -> DescriptionRows:
        rows = self._query(
            "SELECT id, user_id, text, vector FROM descriptions WHERE id > ? ORDER BY id",
            (after_id,),
        )
        if not rows:
            return [], [], [], np.zeros((0, 0), dtype=np.float32)
        blob = b"".join(row[3] for row in rows)
        vectors = np.frombuffer(blob, dtype=np.float32).reshape(len(rows), -1)
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], vectors

    def _meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def _set_meta(self, key: str, value: str) -> None:
        self._query("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _reembed_all(self, embed: Callable[[Sequence[str]], npt.NDArray[np.float32]]) -> None:
        rows = self._query("SELECT id, text FROM descriptions ORDER BY id")
        if not rows:
            return
        vectors = embed([r[1] for r in rows])
        with self._transaction() as txn:
            for row, vector in zip(rows, vectors, strict=True):
                txn.connection.execute(
                    "UPDATE descriptions SET vector = ? WHERE id = ?",
                    (_blob(vector), row[0]),
                )
            txn.bump_epoch()

    def _backend_integrity(self) -> list[str]:
        result = [str(r[0]) for r in self._query("PRAGMA integrity_check")]
        return [] if result == ["ok"] else [f"sqlite integrity_check: {'; '.join(result)}"]


class _SQLiteTransaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def load(self, user_id: str) -> PreferenceProfile | None:
        row = self.connection.execute(
            "SELECT data, embedding FROM profiles WHERE user_id = ?", (user_id,)
        ).fetchone()
        return None if row is None else _profile(row[0], row[1])

    def descriptions(self, user_id: str) -> list[str]:
        rows = self.connection.execute(
            "SELECT text FROM descriptions WHERE user_id = ? ORDER BY id", (user_id,)
        ).fetchall()
        return [r[0] for r in rows]

    def save(
        self,
        profile: PreferenceProfile,
        reason: str,
        vectors: Sequence[tuple[str, Sequence[float]]] | None,
    ) -> None:
        data = profile.model_dump_json(exclude={"embedding"})
        embedding = None if profile.embedding is None else _blob(profile.embedding)
        self.connection.execute(
            "INSERT OR REPLACE INTO profiles (user_id, kind, version, data, embedding) "
            "VALUES (?, ?, ?, ?, ?)",
            (profile.user_id, profile.kind, profile.version, data, embedding),
        )
        self.connection.execute(
            "INSERT INTO history (user_id, version, reason, recorded_at, data) "
            "VALUES (?, ?, ?, ?, ?)",
            (profile.user_id, profile.version, reason, profile.updated_at.isoformat(), data),
        )
        if vectors is not None:
            self._replace_descriptions(profile.user_id, vectors)

    def write_history(self, entry: ProfileVersion) -> None:
        data = (
            None if entry.profile is None else entry.profile.model_dump_json(exclude={"embedding"})
        )
        self.connection.execute(
            "INSERT INTO history (user_id, version, reason, recorded_at, data) "
            "VALUES (?, ?, ?, ?, ?)",
            (entry.user_id, entry.version, entry.reason, entry.recorded_at.isoformat(), data),
        )

    def _replace_descriptions(
        self, user_id: str, vectors: Sequence[tuple[str, Sequence[float]]]
    ) -> None:
        removed = self.connection.execute(
            "DELETE FROM descriptions WHERE user_id = ?", (user_id,)
        ).rowcount
        if removed:
            self.bump_epoch()
        self.connection.executemany(
            "INSERT INTO descriptions (user_id, text, vector) VALUES (?, ?, ?)",
            [(user_id, text, _blob(vector)) for text, vector in vectors],
        )

    def bump_epoch(self) -> None:
        self.connection.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'desc_epoch'"
        )

    def delete(self, user_id: str, version: int) -> None:
        self.connection.execute("DELETE FROM profiles WHERE user_id = ?", (user_id,))
        self._replace_descriptions(user_id, [])
        self.write_history(
            ProfileVersion(
                user_id=user_id,
                version=version,
                reason="delete",
                recorded_at=utcnow(),
                profile=None,
            )
        )

    def add_feedback(self, record: FeedbackRecord) -> int:
        cursor = self.connection.execute(
            "INSERT INTO feedback (user_id, prompt, chosen, rejected, profile_version, "
            "created_at, features, reward_model_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.user_id,
                record.prompt,
                record.chosen,
                record.rejected,
                record.profile_version,
                record.created_at.isoformat(),
                None if record.features is None else json.dumps(record.features),
                record.reward_model_id,
            ),
        )
        return int(cursor.lastrowid or 0)

    def feedback(self, user_id: str) -> list[FeedbackRecord]:
        rows = self.connection.execute(
            "SELECT id, user_id, prompt, chosen, rejected, profile_version, created_at, "
            "features, reward_model_id FROM feedback WHERE user_id = ? ORDER BY id",
            (user_id,),
        ).fetchall()
        return [_feedback(row) for row in rows]


def _blob(vector: Sequence[float] | npt.NDArray[np.float32]) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def _profile(data: str, embedding: bytes | None) -> PreferenceProfile:
    profile = PreferenceProfile.model_validate_json(data)
    if embedding is not None:
        vector = np.frombuffer(embedding, dtype=np.float32)
        profile = profile.model_copy(update={"embedding": [float(v) for v in vector]})
    return profile


def _feedback(row: Sequence[object]) -> FeedbackRecord:
    features = None if row[7] is None else json.loads(str(row[7]))
    return FeedbackRecord(
        id=row[0],  # type: ignore[arg-type]
        user_id=row[1],  # type: ignore[arg-type]
        prompt=row[2],  # type: ignore[arg-type]
        chosen=row[3],  # type: ignore[arg-type]
        rejected=row[4],  # type: ignore[arg-type]
        profile_version=row[5],  # type: ignore[arg-type]
        created_at=row[6],  # type: ignore[arg-type]
        features=features,
        reward_model_id=row[8],  # type: ignore[arg-type]
    )


def _shipped_anchors() -> str | None:
    from langchain_pad.reward_models import DEFAULT_REWARD_MODEL, default_reward_model_path

    present = (default_reward_model_path() / "anchors.json").is_file()
    return DEFAULT_REWARD_MODEL if present else None
