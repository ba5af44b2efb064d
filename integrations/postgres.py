"""A preference-profile store on PostgreSQL, with pgvector for the description lookup.

```python
from langchain_pad.integrations.postgres import PostgresProfileStore

store = PostgresProfileStore("postgresql://pad@127.0.0.1:5432/pad")  # shipped PersRM's anchors
store.match("I'm a busy surgeon: bottom line first").weights
```

Same contract as the SQLite store (``langchain_pad.profiles.testing``), on a server
that many processes and machines can share. What it guarantees:

- **Atomic writes.** Every operation is one transaction: a profile version, its
  history row, its description rows and a feedback pair are all committed or none is.
- **No lost updates.** A write transaction takes a transaction-scoped advisory lock on
  the user id before it reads the current version, so read-modify-write (``put``, a
  feedback refit) is serialized per user across connections and processes, while
  writers of different users proceed in parallel. ``put(expected_version=)`` adds
  optimistic checks for callers that read earlier.
- **Durability** is PostgreSQL's (WAL, ``synchronous_commit`` as configured).
- **Approximate nearest-neighbour lookup.** Description vectors live in a pgvector
  column with an HNSW index (cosine distance), so ``match`` asks the server for the
  nearest user descriptions instead of loading every vector into the process; the
  anchor poles are ranked in process by the same ranker as every other store.
- **Isolation by schema.** All tables live in one schema (``schema=``, default
  ``langchain_pad``): several stores can share a database. A schema that holds other
  tables and no store's schema version is refused and left as it was.
- **No writes into damage.** A statement failing with PostgreSQL's corruption errors
  (``XX001`` data corrupted, ``XX002`` index corrupted) marks the store damaged: every
  later write is refused with :class:`ProfileStoreError`. ``read_only=True`` (a
  replica, a read-only role) creates nothing, seeds nothing and refuses writes.

Needs the ``postgres`` extra (``psycopg[binary]``, ``pgvector``) and a server where the
``vector`` extension is available (``CREATE EXTENSION vector`` is run if needed).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from langchain_pad.profiles.backends.sql import SQLDialect, SQLProfileStore, SQLTransaction
from langchain_pad.profiles.base import AUTO, RewardModelSetting
from langchain_pad.profiles.profile import ANCHOR_PREFIX, PreferenceProfile
from langchain_pad.profiles.protocol import FeedbackLearner, Kind, ProfileStoreError

try:
    import psycopg
    from pgvector.psycopg import register_vector
    from psycopg import sql
    from psycopg.types.json import Jsonb
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "langchain_pad.integrations.postgres needs the postgres extra: "
        "pip install 'langchain-pad[postgres]'"
    ) from exc

from langchain_pad.integrations.postgres_schema import SCHEMA_VERSION, check_schema, create_schema

if TYPE_CHECKING:
    from langchain_pad.embeddings import Embedder

__all__ = ["SCHEMA_VERSION", "PostgresProfileStore"]


class PostgresDialect(SQLDialect):
    """PostgreSQL's spelling of the shared statements: ``%s`` marks, code-point order,
    ``LIMIT NULL``, JSONB, pgvector values, ``TIMESTAMPTZ``."""

    mark = "%s"
    collate = ' COLLATE "C"'
    no_limit = None

    def json_param(self, value: Any) -> object:
        return Jsonb(value)

    def vector_param(self, vector: Sequence[float] | npt.NDArray[np.float32]) -> object:
        return _vector(vector)

    def vector_value(self, stored: Any) -> npt.NDArray[np.float32]:
        return _array(stored)

    def time_param(self, value: datetime) -> object:
        return value


_DIALECT = PostgresDialect()


class PostgresProfileStore(SQLProfileStore):
    """Profiles, their history and feedback in PostgreSQL; descriptions in pgvector.

    ``conninfo`` is a libpq connection string or URL. Each thread uses its own
    connection. ``reward_model``, ``anchors`` and ``anchors_from`` as for
    :class:`~langchain_pad.profiles.SQLiteProfileStore`: the reward model's anchors
    are seeded (idempotent). ``ef_search`` is pgvector's HNSW search width (larger:
    more exact, slower).

    User profiles are looked up by the server's HNSW index; the anchors (a few hundred
    rows) are also held in this process and ranked by the same
    :class:`~langchain_pad.profiles.ranking.AnchorRanker` as in the other stores, so a
    text picks the same pole here as in SQLite (``rerank`` honoured).
    """

    _dialect = _DIALECT

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "langchain_pad",
        embedder: Embedder | None = None,
        learner: FeedbackLearner | None = None,
        reward_model: RewardModelSetting = "default",
        anchors: Sequence[PreferenceProfile] = (),
        anchors_from: str | Path | None = AUTO,
        ef_search: int = 100,
        connect_timeout: float = 10.0,
        read_only: bool = False,
    ) -> None:
        super().__init__(
            embedder=embedder,
            learner=learner,
            reward_model=reward_model,
            search=self._search_descriptions,
            index_anchors_only=True,
        )
        self.conninfo = conninfo
        self.schema = schema
        self.ef_search = ef_search
        self._connect_timeout = connect_timeout
        self._local = threading.local()
        self._connections: list[psycopg.Connection[Any]] = []
        self._connections_lock = threading.Lock()
        self._indexed_dims: set[int] = set()
        self._closed = False
        self._read_only = read_only
        self._damage: list[str] = []
        if read_only:
            check_schema(self.conninfo, self.schema, self._connect_timeout)
            return  # nothing is created or seeded
        create_schema(self.conninfo, self.schema, self._connect_timeout)
        self._seed_initial(anchors, anchors_from)

    _backend_name = "postgres"

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def _identity(self) -> tuple[object, ...]:
        return (self.conninfo, self.schema)

    # ------------------------------------------------------------------ connections

    def _connection(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise ProfileStoreError(f"the profile store (schema {self.schema!r}) is closed")
        connection: psycopg.Connection[Any] | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed:
            connection = psycopg.connect(
                self.conninfo, autocommit=True, connect_timeout=int(self._connect_timeout)
            )
            connection.execute(
                sql.SQL("SET search_path TO {}, public").format(sql.Identifier(self.schema))
            )
            if self._read_only:  # the server itself refuses writes on this connection
                connection.execute("SET default_transaction_read_only = on")
            register_vector(connection)
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

    def drop(self) -> None:
        """Delete this store's schema and everything in it (tests, teardown)."""
        with psycopg.connect(self.conninfo, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
            )

    @contextmanager
    def _transaction(self) -> Iterator[SQLTransaction]:
        self._require_writable()
        connection = self._connection()
        with self._guard(), connection.transaction():
            yield _PostgresTransaction(connection, _DIALECT, self.stored_context)

    def _query(self, statement: str, params: Sequence[object] = ()) -> list[Any]:
        with self._guard():
            return super()._query(statement, params)

    def _write_refusal(self) -> Exception | None:
        where = f"the profile store (schema {self.schema!r})"
        if self._closed:
            return ProfileStoreError(f"{where} is closed")
        if self._read_only:
            return ProfileStoreError(
                f"{where} is read-only (opened with read_only=True): it can be read, not "
                "written; open it with read_only=False on a writable server to change it"
            )
        if self._damage:
            return ProfileStoreError(
                f"{where} is damaged ({self._damage[0]}); it takes no more writes: repair "
                "the database (REINDEX, or restore from a backup or an export_json())"
            )
        return None

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """PostgreSQL's corruption errors (SQLSTATE class XX) mark the store damaged."""
        try:
            yield
        except (psycopg.errors.DataCorrupted, psycopg.errors.IndexCorrupted) as exc:
            finding = f"PostgreSQL {exc.sqlstate}: {str(exc).splitlines()[0]}"
            with self._connections_lock:
                self._damage = list(dict.fromkeys([*self._damage, finding]))
            refusal = self._write_refusal()
            raise (refusal or ProfileStoreError(finding)) from exc
        except psycopg.errors.ReadOnlySqlTransaction as exc:
            raise ProfileStoreError(
                f"the profile store (schema {self.schema!r}) is on a read-only server or "
                f"connection ({str(exc).splitlines()[0]}): open it with read_only=True to read"
            ) from exc

    def _backend_integrity(self) -> list[str]:
        rows = self._query("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        findings = [] if rows else ["the pgvector extension is missing from the database"]
        return [*self._damage, *findings]

    def _after_check(self, backend_findings: list[str]) -> None:
        with self._connections_lock:
            self._damage = [f for f in backend_findings if f.startswith("PostgreSQL XX")]

    def _probe(self) -> list[str]:
        """One round trip (``SELECT 1``); no host names or paths in the finding."""
        if self._closed:
            return ["the profile store is closed"]
        try:
            self._connection().execute("SELECT 1").fetchone()
        except psycopg.Error as exc:
            return [*self._damage, f"the database does not answer ({type(exc).__name__})"]
        return list(self._damage)

    # ------------------------------------------------------------------ matching (HNSW)

    def _ensure_index(self, dim: int) -> None:
        """The HNSW index over descriptions embedded with ``dim`` dimensions (a
        read-only store creates none: its lookups scan when no writer made one)."""
        if dim in self._indexed_dims or self._read_only:
            return
        name = sql.Identifier(f"descriptions_hnsw_{dim}")
        connection = self._connection()
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(hashtext('langchain_pad:ddl'))")
            connection.execute(
                sql.SQL(
                    "CREATE INDEX IF NOT EXISTS {} ON descriptions USING hnsw "
                    "((vector::vector({})) vector_cosine_ops) WHERE vector_dims(vector) = {}"
                ).format(name, sql.Literal(dim), sql.Literal(dim))
            )
        self._indexed_dims.add(dim)

    def _search_descriptions(
        self, query: npt.NDArray[np.float32], query_text: str, top_k: int, kind: Kind | None
    ) -> list[tuple[str, float, str]]:
        """Nearest descriptions by the server's HNSW index (cosine), best row per user."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        dim = int(q.shape[0])
        if top_k <= 0:
            return []
        self._ensure_index(dim)
        condition = ""
        if kind == "anchor":
            condition = " AND starts_with(user_id, %(prefix)s)"
        elif kind == "user":
            condition = " AND NOT starts_with(user_id, %(prefix)s)"
        # A user may own several rows (aliases): fetch more rows than users wanted.
        want = max(4 * top_k, top_k + 16)
        # The HNSW scan filters after it gathers ef_search candidates: looking for users
        # only, it must reach past the anchors' rows (a few hundred) near the query.
        width = want + (self.matcher.anchor_rows if kind == "user" else 0)
        statement = (
            f"SELECT user_id, text, 1 - (vector::vector({dim}) <=> %(q)s::vector({dim})) "
            f"FROM descriptions WHERE vector_dims(vector) = {dim}{condition} "
            f"ORDER BY vector::vector({dim}) <=> %(q)s::vector({dim}) LIMIT %(want)s"
        )
        connection = self._connection()
        with connection.transaction():
            connection.execute(
                sql.SQL("SET LOCAL hnsw.ef_search = {}").format(
                    sql.Literal(min(1000, max(self.ef_search, width)))  # pgvector's maximum
                )
            )
            rows = connection.execute(
                statement,
                {"q": _vector(q), "want": want, "prefix": ANCHOR_PREFIX},
            ).fetchall()
        best: dict[str, tuple[float, str]] = {}
        for user_id, text, similarity in rows:
            if user_id not in best:
                best[user_id] = (float(similarity), text)
                if len(best) == top_k:
                    break
        return [(user, sim, text) for user, (sim, text) in best.items()]

    def explain_match(self, dim: int) -> str:
        """The server's plan of the lookup query (shows the HNSW index scan)."""
        self._ensure_index(dim)
        zero = _vector(np.ones(dim, dtype=np.float32))
        connection = self._connection()
        with connection.transaction():
            connection.execute("SET LOCAL enable_seqscan = off")
            rows = connection.execute(
                f"EXPLAIN SELECT user_id FROM descriptions WHERE vector_dims(vector) = {dim} "
                f"ORDER BY vector::vector({dim}) <=> %s::vector({dim}) LIMIT 5",
                (zero,),
            ).fetchall()
        return "\n".join(str(r[0]) for r in rows)


class _PostgresTransaction(SQLTransaction):
    def load(self, user_id: str) -> PreferenceProfile | None:
        # Every write reads the user's current version first: lock the user here, so
        # concurrent read-modify-writes of one user run one after another.
        self.connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("profile:" + user_id,)
        )
        return super().load(user_id)


def _vector(values: Sequence[float] | npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.asarray(values, dtype=np.float32).reshape(-1)


def _array(value: Any) -> npt.NDArray[np.float32]:
    """A pgvector value (``Vector`` or numpy, by pgvector version) as a float32 array."""
    to_numpy = getattr(value, "to_numpy", None)
    return np.asarray(to_numpy() if to_numpy is not None else value, dtype=np.float32)
