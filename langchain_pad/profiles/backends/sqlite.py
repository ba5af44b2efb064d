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

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from langchain_pad.profiles.backends.sql import SQLDialect, SQLProfileStore, SQLTransaction
from langchain_pad.profiles.base import AUTO, RewardModelSetting
from langchain_pad.profiles.protocol import FeedbackLearner, ProfileStoreError

if TYPE_CHECKING:
    from langchain_pad.embeddings import Embedder
    from langchain_pad.profiles.profile import PreferenceProfile

__all__ = [
    "MIGRATIONS",
    "PROFILES_ENV_VAR",
    "SCHEMA_VERSION",
    "SQLiteProfileStore",
    "default_profiles_path",
    "migrate",
]

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


class SQLiteProfileStore(SQLProfileStore):
    """Profiles, their history and feedback in one SQLite file.

    ```python
    from langchain_pad.profiles import SQLiteProfileStore

    store = SQLiteProfileStore()  # ~/.local/share/langchain-pad/profiles.sqlite3
    store = SQLiteProfileStore("profiles.sqlite3")  # any path: the same anchors
    match = store.match("I'm a busy surgeon: bottom line first")
    ```

    ``reward_model`` (a PersRM directory, ``"default"``: the shipped PersRM, or None)
    is the reward model the profiles belong to: the store seeds its anchor profiles
    (idempotent; re-seeding writes nothing) whatever the path, so ``match`` works on
    a new file, and learns from feedback with it when no ``learner`` is given.
    ``anchors_from`` seeds another PersRM directory's anchors instead (None: none);
    by default (``"auto"``) the reward model's, unless ``anchors`` are given.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        embedder: Embedder | None = None,
        learner: FeedbackLearner | None = None,
        reward_model: RewardModelSetting = "default",
        anchors: Sequence[PreferenceProfile] = (),
        anchors_from: str | Path | None = AUTO,
        timeout: float = 60.0,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        super().__init__(embedder=embedder, learner=learner, reward_model=reward_model)
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
        self._seed_initial(anchors, anchors_from)

    # ------------------------------------------------------------------ connections

    @property
    def _identity(self) -> tuple[object, ...]:
        return (str(self.path),)

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
    def _transaction(self) -> Iterator[SQLTransaction]:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield SQLTransaction(connection, _DIALECT)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def _backend_integrity(self) -> list[str]:
        result = [str(r[0]) for r in self._query("PRAGMA integrity_check")]
        return [] if result == ["ok"] else [f"sqlite integrity_check: {'; '.join(result)}"]


_DIALECT = SQLDialect()
