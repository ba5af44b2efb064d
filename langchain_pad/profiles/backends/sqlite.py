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
- **Only its own files.** A path is looked at read-only before anything is written
  (:mod:`.sqlite_file`): a new or empty file is initialised, a store is migrated,
  another program's database is refused and left byte-identical, a path under a
  regular file is named as such.
- **No writes into damage.** A file SQLite cannot read ("file is not a database",
  "database disk image is malformed", missing tables) opens for
  :meth:`~SQLiteProfileStore.check_integrity`, :meth:`~SQLiteProfileStore.health`
  and the reads that still work; every write is refused with an error that names the
  file and says how to recover. Damage is known from the open, from a
  ``PRAGMA quick_check`` before the first write of each store object, from the last
  full check, and from any statement failing with a corruption error.
- **Read-only files.** A file (or directory) the process cannot write, or
  ``read_only=True``, opens with SQLite's ``mode=ro``: reads work, writes fail with
  an error saying the store is read-only.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_pad.profiles.backends import sqlite_file
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
        if found == 0:  # checked again under the write lock: another program's tables?
            tables = connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            ).fetchall()
            if tables:
                raise ProfileStoreError(
                    "this SQLite database has tables but no profile-store schema version "
                    f"({', '.join(str(t[0]) for t in tables[:8])}): it is not a "
                    "langchain-pad profile store; it was left untouched"
                )
        for version in range(found, target):
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    connection.execute(statement)
        if target > found:
            connection.execute(f"PRAGMA user_version = {int(target)}")
            connection.execute(f"PRAGMA application_id = {sqlite_file.APPLICATION_ID}")
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

    ``read_only=True`` (or a file or directory this process cannot write) opens the
    file for reading only: nothing is seeded or migrated, writes raise
    :class:`ProfileStoreError`. ``quick_check`` runs ``PRAGMA quick_check`` once
    before this object's first write (milliseconds for a typical store; one read of
    the file for a large one), so damage is found before a write can spread it.
    """

    _backend_name = "sqlite"

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
        read_only: bool = False,
        quick_check: bool = True,
    ) -> None:
        super().__init__(embedder=embedder, learner=learner, reward_model=reward_model)
        self.path = Path(path).expanduser() if path is not None else default_profiles_path()
        sqlite_file.check_path(self.path)
        self._read_only = sqlite_file.read_only_reason(self.path, read_only)
        if self._read_only is None:
            sqlite_file.ensure_parent(self.path)
        kind, version, findings = sqlite_file.inspect(self.path, SCHEMA_VERSION, timeout)
        if kind == "new" and self._read_only is not None:
            raise ProfileStoreError(
                f"the profile store {self.path} does not exist or is empty, and it cannot "
                f"be created: {self._read_only}; create it with write access first"
            )
        if kind == "ours" and self._read_only is not None and version < SCHEMA_VERSION:
            raise ProfileStoreError(
                f"the profile store {self.path} has schema version {version} and needs "
                f"migrating to {SCHEMA_VERSION}, which needs write access "
                f"({self._read_only}): open it once with write access"
            )
        self._timeout = timeout
        self._synchronous = synchronous
        self._quick_check = quick_check
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self._damage: list[str] = list(findings)
        """Why the file is damaged (empty: it is not known to be); writes are refused."""
        self._write_checked = False
        self._read_connections = kind == "damaged" or self._read_only is not None
        """Connections open with ``mode=ro``: SQLite itself cannot write through them."""
        if kind == "damaged" or self._read_only is not None:
            return  # nothing to initialise, migrate or seed: reads and checks only
        with self._guard():
            connection = self._connection()
            connection.execute("PRAGMA journal_mode=WAL")
            migrate(connection)
        try:
            self._seed_initial(anchors, anchors_from)
        except ProfileStoreError:
            if not self._damage:
                raise  # damage found meanwhile: the store opens for checks, refusing writes

    @property
    def read_only(self) -> bool:
        return self._read_only is not None

    # ------------------------------------------------------------------ connections

    @property
    def _identity(self) -> tuple[object, ...]:
        return (str(self.path),)

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise ProfileStoreError(f"the profile store {self.path} is closed")
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite_file.connect(
                self.path, read_only=self._read_connections, timeout=self._timeout
            )
            try:
                connection.execute(f"PRAGMA synchronous={self._synchronous}")
                connection.execute("PRAGMA foreign_keys=ON")
            except sqlite3.DatabaseError as exc:  # a damaged file: still open it for checks
                finding = sqlite_file.damage_of(exc)
                if finding is None:
                    connection.close()
                    raise
                self._mark_damaged([finding])
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

    # ------------------------------------------------------------------ guards

    def _write_refusal(self) -> Exception | None:
        if self._closed:
            return ProfileStoreError(f"the profile store {self.path} is closed")
        if self._read_only is not None:
            return sqlite_file.read_only_error(self.path, self._read_only)
        if self._damage:
            return sqlite_file.damaged_error(self.path, self._damage[0])
        return None

    def _require_writable(self) -> None:
        super()._require_writable()
        if self._quick_check and not self._write_checked:
            self._run_quick_check()
            super()._require_writable()

    def _run_quick_check(self) -> None:
        """``PRAGMA quick_check`` once per store object (before its first write or
        :meth:`health`): every page is read, indexes are not cross-checked."""
        try:
            with self._guard():
                lines = [str(r[0]) for r in self._connection().execute("PRAGMA quick_check")]
            if lines != ["ok"]:
                self._mark_damaged([f"quick_check: {line}" for line in lines[:20]])
        except ProfileStoreError:
            pass  # _guard marked the damage it met
        self._write_checked = True

    def _mark_damaged(self, findings: Sequence[str]) -> None:
        with self._connections_lock:
            self._damage = list(dict.fromkeys([*self._damage, *findings]))

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite's corruption and read-only errors as :class:`ProfileStoreError`s that
        say what to do; a corruption error marks the store damaged (no more writes)."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            finding = sqlite_file.damage_of(exc)
            if finding is not None:
                self._mark_damaged([finding])
                raise sqlite_file.damaged_error(self.path, finding) from exc
            if sqlite_file.is_read_only_error(exc):
                reason = self._read_only or f"SQLite refused the write: {exc}"
                raise sqlite_file.read_only_error(self.path, reason) from exc
            raise

    def _query(self, statement: str, params: Sequence[object] = ()) -> list[Any]:
        with self._guard():
            return super()._query(statement, params)

    @contextmanager
    def _transaction(self) -> Iterator[SQLTransaction]:
        self._require_writable()
        connection = self._connection()
        with self._guard():
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield SQLTransaction(connection, _DIALECT, self.stored_context)
                connection.execute("COMMIT")
            except BaseException:
                # a failed COMMIT or a damaged file may have ended the transaction already
                with suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ checks

    def _backend_integrity(self) -> list[str]:
        return sqlite_file.integrity_findings(self._connection())

    def _after_check(self, backend_findings: list[str]) -> None:
        # The full check is the authority: damage it finds blocks writes, and a clean
        # result (e.g. after a transient error) lifts the block; a file that was damaged
        # when opened (read-only connections, never migrated) stays blocked until reopened.
        if self._read_connections and not backend_findings:
            return
        with self._connections_lock:
            self._damage = list(backend_findings)
        self._write_checked = True

    def _probe(self) -> list[str]:
        """The damage known (open, quick_check, failed statements, the last full
        check), after a quick_check the first time and a read of ``meta`` each time
        (cheap; catches a file cut short or replaced)."""
        if self._closed:
            return ["the profile store is closed"]
        if not self._write_checked and self._quick_check:
            self._run_quick_check()
        if not self._damage:
            try:
                self._query("SELECT value FROM meta WHERE key = 'desc_epoch'")
            except ProfileStoreError:
                pass  # _guard marked the damage it met
            except sqlite3.Error as exc:
                return [f"SQLite: {exc}"]
        return list(self._damage)


_DIALECT = SQLDialect()
