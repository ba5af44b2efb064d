"""The PostgreSQL store's tables, and the checks made before any of them is created.

A store lives in one schema of a database that other programs may share, so a schema
that already holds tables is used only when it is a store's (its ``meta`` table
records a ``schema_version``); another program's schema is refused before anything,
the ``vector`` extension included, is created.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from langchain_pad.profiles.protocol import ProfileStoreError

__all__ = ["SCHEMA_VERSION", "check_schema", "create_schema", "refuse_foreign_tables"]

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


def create_schema(conninfo: str, schema: str, connect_timeout: float) -> None:
    """Create (or upgrade) the store's tables in ``schema``, one creator at a time."""
    with (
        psycopg.connect(
            conninfo, autocommit=True, connect_timeout=int(connect_timeout)
        ) as connection,
        connection.transaction(),
    ):
        # one creator at a time, across processes
        connection.execute("SELECT pg_advisory_xact_lock(hashtext('langchain_pad:ddl'))")
        refuse_foreign_tables(connection, schema)
        connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        connection.execute(
            sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(schema))
        )
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                connection.execute(statement)
        row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
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


def refuse_foreign_tables(connection: psycopg.Connection[Any], schema: str) -> None:
    """A schema with tables but no store schema version is another program's."""
    tables = [
        str(r[0])
        for r in connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "ORDER BY table_name",
            (schema,),
        ).fetchall()
    ]
    if not tables:
        return
    row = None
    if "meta" in tables:
        row = connection.execute(
            sql.SQL("SELECT value FROM {}.meta WHERE key = 'schema_version'").format(
                sql.Identifier(schema)
            )
        ).fetchone()
    if row is None:
        raise ProfileStoreError(
            f"the schema {schema!r} of this database is not a langchain-pad profile "
            f"store: it holds other tables ({', '.join(tables[:8])}) and no store schema "
            "version. It was left untouched; pass schema= a new schema or a store's"
        )


def check_schema(conninfo: str, schema: str, connect_timeout: float) -> None:
    """A read-only store needs an existing store schema (it creates nothing)."""
    with psycopg.connect(
        conninfo, autocommit=True, connect_timeout=int(connect_timeout)
    ) as connection:
        refuse_foreign_tables(connection, schema)
        found = connection.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s "
            "AND table_name = 'meta'",
            (schema,),
        ).fetchone()
    if found is None:
        raise ProfileStoreError(
            f"the schema {schema!r} holds no profile store, and a read-only store "
            "cannot create one: open it once with write access first"
        )
