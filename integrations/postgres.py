"""A preference-profile store on PostgreSQL, with pgvector for the description lookup.

```python
from langchain_pad.integrations.postgres import PostgresProfileStore

store = PostgresProfileStore("postgresql://pad@127.0.0.1:5432/pad", anchors_from="persrm/")
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
  nearest descriptions instead of loading every vector into the process.
- **Isolation by schema.** All tables live in one schema (``schema=``, default
  ``langchain_pad``): several stores can share a database.

Needs the ``postgres`` extra (``psycopg[binary]``, ``pgvector``) and a server where the
``vector`` extension is available (``CREATE EXTENSION vector`` is run if needed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from langchain_pad.profiles.matching import (
    DEFAULT_MARGIN,
    DEFAULT_THRESHOLD,
    DEFAULT_TOP_K,
    MatchResult,
    ProfileMatch,
    combine,
)
from langchain_pad.profiles.profile import ANCHOR_PREFIX, PreferenceProfile, ProfileVersion, utcnow
from langchain_pad.profiles.store import (
    BaseProfileStore,
    DescriptionRows,
    FeedbackLearner,
    FeedbackRecord,
    Kind,
    ProfileStoreError,
)

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

if TYPE_CHECKING:
    from langchain_pad.embeddings import Embedder

__all__ = ["SCHEMA_VERSION", "PostgresProfileStore"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS profiles (
    user_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    data JSONB NOT NULL,
    embedding vector
);
CREATE TABLE IF NOT EXISTS history (
    user_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    reason TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    data JSONB,
    PRIMARY KEY (user_id, version)
);
CREATE TABLE IF NOT EXISTS descriptions (
    id BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL,
    text TEXT NOT NULL,
    vector vector NOT NULL
);
CREATE INDEX IF NOT EXISTS descriptions_user ON descriptions (user_id);
CREATE TABLE IF NOT EXISTS feedback (
    id BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL,
    prompt TEXT NOT NULL,
    chosen TEXT NOT NULL,
    rejected TEXT NOT NULL,
    profile_version INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    features JSONB,
    reward_model_id TEXT
);
CREATE INDEX IF NOT EXISTS feedback_user ON feedback (user_id, id);
INSERT INTO meta VALUES ('desc_epoch', '0') ON CONFLICT DO NOTHING;
"""

_FEEDBACK_COLUMNS = (
    "id, user_id, prompt, chosen, rejected, profile_version, created_at, features, reward_model_id"
)


class PostgresProfileStore(BaseProfileStore):
    """Profiles, their history and feedback in PostgreSQL; descriptions in pgvector.

    ``conninfo`` is a libpq connection string or URL. Each thread uses its own
    connection. ``anchors_from`` (a PersRM directory holding ``anchors.json``) seeds
    the reward model's anchor profiles; seeding is idempotent. ``ef_search`` is
    pgvector's HNSW search width (larger: more exact, slower).
    """

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "langchain_pad",
        embedder: Embedder | None = None,
        learner: FeedbackLearner | None = None,
        anchors: Sequence[PreferenceProfile] = (),
        anchors_from: str | Path | None = None,
        ef_search: int = 100,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__(embedder=embedder, learner=learner)
        self.conninfo = conninfo
        self.schema = schema
        self.ef_search = ef_search
        self._connect_timeout = connect_timeout
        self._local = threading.local()
        self._connections: list[psycopg.Connection[Any]] = []
        self._connections_lock = threading.Lock()
        self._indexed_dims: set[int] = set()
        self._closed = False
        self._create_schema()
        if anchors_from is not None:
            from langchain_pad.profiles.anchors import anchor_profiles

            anchors = [*anchors, *anchor_profiles(anchors_from)]
        if anchors:
            self.seed_anchors(anchors)

    # ------------------------------------------------------------------ connections

    def _create_schema(self) -> None:
        with (
            psycopg.connect(
                self.conninfo, autocommit=True, connect_timeout=int(self._connect_timeout)
            ) as connection,
            connection.transaction(),
        ):
            # one creator at a time, across processes
            connection.execute("SELECT pg_advisory_xact_lock(hashtext('langchain_pad:ddl'))")
            connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
            connection.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
            )
            connection.execute(
                sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(self.schema))
            )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            row = connection.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()
            found = int(row[0]) if row else 0
            if found > SCHEMA_VERSION:
                raise ProfileStoreError(
                    f"this profile store uses schema version {found}, newer than this "
                    f"langchain-pad understands ({SCHEMA_VERSION}): upgrade langchain-pad"
                )
            connection.execute(
                "INSERT INTO meta VALUES ('schema_version', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (str(SCHEMA_VERSION),),
            )

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
    def _transaction(self) -> Iterator[_PostgresTransaction]:
        connection = self._connection()
        with connection.transaction():
            yield _PostgresTransaction(connection)

    def _query(self, query: Any, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._connection().execute(query, tuple(params)).fetchall()

    # ------------------------------------------------------------------ reads

    def _read(self, user_id: str) -> PreferenceProfile | None:
        rows = self._query("SELECT data, embedding FROM profiles WHERE user_id = %s", (user_id,))
        return _profile(rows[0][0], rows[0][1]) if rows else None

    def _read_many(self, user_ids: Sequence[str]) -> dict[str, PreferenceProfile]:
        if not user_ids:
            return {}
        rows = self._query(
            "SELECT user_id, data, embedding FROM profiles WHERE user_id = ANY(%s)",
            (list(user_ids),),
        )
        return {row[0]: _profile(row[1], row[2]) for row in rows}

    def _list(self, kind: Kind | None, limit: int | None, offset: int) -> list[PreferenceProfile]:
        query = "SELECT data, embedding FROM profiles"
        params: list[object] = []
        if kind is not None:
            query += " WHERE kind = %s"
            params.append(kind)
        query += ' ORDER BY user_id COLLATE "C" LIMIT %s OFFSET %s'
        params += [limit, offset]
        return [_profile(row[0], row[1]) for row in self._query(query, params)]

    def _count(self, kind: Kind | None) -> int:
        if kind is None:
            return int(self._query("SELECT count(*) FROM profiles")[0][0])
        return int(self._query("SELECT count(*) FROM profiles WHERE kind = %s", (kind,))[0][0])

    def _history(self, user_id: str | None) -> list[ProfileVersion]:
        query = "SELECT user_id, version, reason, recorded_at, data FROM history"
        params: tuple[object, ...] = ()
        if user_id is not None:
            query += " WHERE user_id = %s"
            params = (user_id,)
        rows = self._query(query + ' ORDER BY user_id COLLATE "C", version', params)
        return [
            ProfileVersion(
                user_id=row[0],
                version=row[1],
                reason=row[2],
                recorded_at=row[3],
                profile=None if row[4] is None else PreferenceProfile.model_validate(row[4]),
            )
            for row in rows
        ]

    def _feedback(self, user_id: str | None) -> list[FeedbackRecord]:
        query = f"SELECT {_FEEDBACK_COLUMNS} FROM feedback"
        params: tuple[object, ...] = ()
        if user_id is not None:
            query += " WHERE user_id = %s"
            params = (user_id,)
        rows = self._query(query + ' ORDER BY user_id COLLATE "C", id', params)
        return [_feedback(row) for row in rows]

    def _description_state(self) -> tuple[object, int]:
        epoch = self._query("SELECT value FROM meta WHERE key = 'desc_epoch'")[0][0]
        max_id = self._query("SELECT max(id) FROM descriptions")[0][0]
        return (self.conninfo, self.schema, epoch), int(max_id or 0)

    def _description_rows(self, after_id: int) -> DescriptionRows:
        rows = self._query(
            "SELECT id, user_id, text, vector FROM descriptions WHERE id > %s ORDER BY id",
            (after_id,),
        )
        if not rows:
            return [], [], [], np.zeros((0, 0), dtype=np.float32)
        vectors = np.stack([_array(r[3]) for r in rows])
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], vectors

    def _meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = %s", (key,))
        return str(rows[0][0]) if rows else None

    def _set_meta(self, key: str, value: str) -> None:
        self._query(
            "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = "
            "EXCLUDED.value RETURNING key",
            (key, value),
        )

    def _reembed_all(self, embed: Callable[[Sequence[str]], npt.NDArray[np.float32]]) -> None:
        rows = self._query("SELECT id, text FROM descriptions ORDER BY id")
        if not rows:
            return
        vectors = embed([r[1] for r in rows])
        with self._transaction() as txn:
            for row, vector in zip(rows, vectors, strict=True):
                txn.connection.execute(
                    "UPDATE descriptions SET vector = %s WHERE id = %s",
                    (_vector(vector), row[0]),
                )
            txn.bump_epoch()

    def _backend_integrity(self) -> list[str]:
        rows = self._query("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        return [] if rows else ["the pgvector extension is missing from the database"]

    # ------------------------------------------------------------------ matching (HNSW)

    def _ensure_index(self, dim: int) -> None:
        """The HNSW index over descriptions embedded with ``dim`` dimensions."""
        if dim in self._indexed_dims:
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

    def match_vector(
        self,
        query: npt.NDArray[np.float32],
        *,
        query_text: str = "",
        top_k: int = DEFAULT_TOP_K,
        threshold: float = DEFAULT_THRESHOLD,
        margin: float = DEFAULT_MARGIN,
        kind: Kind | None = None,
        rerank: bool | None = None,
    ) -> MatchResult:
        """Nearest descriptions by the server's HNSW index (cosine), best row per user.

        Every profile, anchors included, is ranked by cosine: the anchor ranker of the
        in-process stores (:mod:`langchain_pad.profiles.ranking`) would need the anchor
        rows in this process, so it is not applied here and ``rerank`` is ignored.
        """
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        dim = int(q.shape[0])
        self._ensure_index(dim)
        condition = ""
        if kind == "anchor":
            condition = " AND starts_with(user_id, %(prefix)s)"
        elif kind == "user":
            condition = " AND NOT starts_with(user_id, %(prefix)s)"
        # A user may own several rows (aliases): fetch more rows than users wanted.
        want = max(4 * top_k, top_k + 16)
        statement = (
            f"SELECT user_id, text, 1 - (vector::vector({dim}) <=> %(q)s::vector({dim})) "
            f"FROM descriptions WHERE vector_dims(vector) = {dim}{condition} "
            f"ORDER BY vector::vector({dim}) <=> %(q)s::vector({dim}) LIMIT %(want)s"
        )
        connection = self._connection()
        with connection.transaction():
            connection.execute(
                sql.SQL("SET LOCAL hnsw.ef_search = {}").format(
                    sql.Literal(max(self.ef_search, want))
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
        profiles = self._read_many(list(best))
        matches = [
            ProfileMatch(profile=profiles[user], similarity=sim, matched_text=text)
            for user, (sim, text) in best.items()
            if user in profiles
        ]
        weights, used = combine(matches, threshold=threshold, margin=margin)
        return MatchResult(
            query=query_text, matches=matches, weights=weights, used=used, threshold=threshold
        )

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


class _PostgresTransaction:
    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection

    def load(self, user_id: str) -> PreferenceProfile | None:
        # Every write reads the user's current version first: lock the user here, so
        # concurrent read-modify-writes of one user run one after another.
        self.connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("profile:" + user_id,)
        )
        row = self.connection.execute(
            "SELECT data, embedding FROM profiles WHERE user_id = %s", (user_id,)
        ).fetchone()
        return None if row is None else _profile(row[0], row[1])

    def descriptions(self, user_id: str) -> list[str]:
        rows = self.connection.execute(
            "SELECT text FROM descriptions WHERE user_id = %s ORDER BY id", (user_id,)
        ).fetchall()
        return [r[0] for r in rows]

    def save(
        self,
        profile: PreferenceProfile,
        reason: str,
        vectors: Sequence[tuple[str, Sequence[float]]] | None,
    ) -> None:
        data = Jsonb(profile.model_dump(mode="json", exclude={"embedding"}))
        embedding = None if profile.embedding is None else _vector(profile.embedding)
        self.connection.execute(
            "INSERT INTO profiles (user_id, kind, version, data, embedding) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (user_id) DO UPDATE SET "
            "kind = EXCLUDED.kind, version = EXCLUDED.version, data = EXCLUDED.data, "
            "embedding = EXCLUDED.embedding",
            (profile.user_id, profile.kind, profile.version, data, embedding),
        )
        self.connection.execute(
            "INSERT INTO history (user_id, version, reason, recorded_at, data) "
            "VALUES (%s, %s, %s, %s, %s)",
            (profile.user_id, profile.version, reason, profile.updated_at, data),
        )
        if vectors is not None:
            self._replace_descriptions(profile.user_id, vectors)

    def write_history(self, entry: ProfileVersion) -> None:
        data = (
            None
            if entry.profile is None
            else Jsonb(entry.profile.model_dump(mode="json", exclude={"embedding"}))
        )
        self.connection.execute(
            "INSERT INTO history (user_id, version, reason, recorded_at, data) "
            "VALUES (%s, %s, %s, %s, %s)",
            (entry.user_id, entry.version, entry.reason, entry.recorded_at, data),
        )

    def _replace_descriptions(
        self, user_id: str, vectors: Sequence[tuple[str, Sequence[float]]]
    ) -> None:
        removed = self.connection.execute(
            "DELETE FROM descriptions WHERE user_id = %s", (user_id,)
        ).rowcount
        if removed:
            self.bump_epoch()
        if vectors:
            with self.connection.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO descriptions (user_id, text, vector) VALUES (%s, %s, %s)",
                    [(user_id, text, _vector(vector)) for text, vector in vectors],
                )

    def bump_epoch(self) -> None:
        self.connection.execute(
            "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'desc_epoch'"
        )

    def delete(self, user_id: str, version: int) -> None:
        self.connection.execute("DELETE FROM profiles WHERE user_id = %s", (user_id,))
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
        row = self.connection.execute(
            "INSERT INTO feedback (user_id, prompt, chosen, rejected, profile_version, "
            "created_at, features, reward_model_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "RETURNING id",
            (
                record.user_id,
                record.prompt,
                record.chosen,
                record.rejected,
                record.profile_version,
                record.created_at,
                None if record.features is None else Jsonb(record.features),
                record.reward_model_id,
            ),
        ).fetchone()
        return int(row[0]) if row else 0

    def feedback(self, user_id: str) -> list[FeedbackRecord]:
        rows = self.connection.execute(
            f"SELECT {_FEEDBACK_COLUMNS} FROM feedback WHERE user_id = %s ORDER BY id",
            (user_id,),
        ).fetchall()
        return [_feedback(row) for row in rows]


def _vector(values: Sequence[float] | npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.asarray(values, dtype=np.float32).reshape(-1)


def _array(value: Any) -> npt.NDArray[np.float32]:
    """A pgvector value (``Vector`` or numpy, by pgvector version) as a float32 array."""
    to_numpy = getattr(value, "to_numpy", None)
    return np.asarray(to_numpy() if to_numpy is not None else value, dtype=np.float32)


def _profile(data: dict[str, Any], embedding: Any) -> PreferenceProfile:
    profile = PreferenceProfile.model_validate(data)
    if embedding is not None:
        vector = _array(embedding)
        profile = profile.model_copy(update={"embedding": [float(v) for v in vector]})
    return profile


def _feedback(row: Sequence[Any]) -> FeedbackRecord:
    return FeedbackRecord(
        id=row[0],
        user_id=row[1],
        prompt=row[2],
        chosen=row[3],
        rejected=row[4],
        profile_version=row[5],
        created_at=row[6],
        features=row[7],
        reward_model_id=row[8],
    )
