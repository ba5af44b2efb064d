"""The ProfileStore contract on a real PostgreSQL server with pgvector (HNSW lookup)."""

from __future__ import annotations

import hashlib
import threading

import pytest

from langchain_pad.profiles import ProfileStoreError
from langchain_pad.profiles.testing import HashingEmbedder, ProfileStoreContract, user

from ._postgres import postgres_bin, throwaway_postgres

pytest.importorskip("psycopg")
if postgres_bin() is None:
    pytest.skip("no PostgreSQL with pgvector (run `make system-deps`)", allow_module_level=True)

from langchain_pad.integrations.postgres import PostgresProfileStore


@pytest.fixture(scope="module")
def conninfo():
    with throwaway_postgres() as url:
        yield url


class TestPostgresProfileStore(ProfileStoreContract):
    @pytest.fixture(autouse=True)
    def _server(self, conninfo):
        self.conninfo = conninfo
        self.stores = []
        yield
        for store in self.stores:
            store.close()
            store.drop()

    def make_store(self, tmp_path, **kwargs):
        schema = "t_" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:16]
        store = PostgresProfileStore(self.conninfo, schema=schema, **kwargs)
        self.stores.append(store)
        return store


def test_lookup_uses_the_hnsw_index(conninfo):
    store = PostgresProfileStore(conninfo, schema="plan_check", embedder=HashingEmbedder())
    try:
        for i in range(50):
            store.put(user(f"u{i}", f"topic {i} words {i % 7}", expertise=i / 50))
        plan = store.explain_match(64)
        assert "descriptions_hnsw_64" in plan, plan
        assert store.match("topic 3 words 3").used[0] == "u3"
    finally:
        store.close()
        store.drop()


def test_users_are_found_past_the_anchor_rows(conninfo):
    """A guard: the user search filters anchors out after the HNSW scan, so the scan is
    widened by the anchors' ~200 rows. (With this few rows it found the user without the
    widening too; the widening matters once ef_search candidates are all anchors.)"""
    store = PostgresProfileStore(conninfo, schema="crowded", embedder=HashingEmbedder())
    try:
        assert store.count(kind="anchor") == 4
        store.put(user("ana", "zebra quantum lasagna"))  # far from every anchor row
        store.refresh_index()
        query = HashingEmbedder().embed(["Explain things simply, so a child could understand."])
        found = store._search_descriptions(query[0], "", 1, "user")
        assert [u for u, _, _ in found] == ["ana"]
        result = store.match("Explain things simply, so a child could understand.")
        assert result.best is not None
        assert result.best.profile.user_id == "anchor:expertise:elementary"
    finally:
        store.close()
        store.drop()


def test_a_schema_of_another_program_is_refused_untouched(conninfo):
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("CREATE SCHEMA theirs")
        connection.execute("CREATE TABLE theirs.profiles (id INT)")
    try:
        with pytest.raises(ProfileStoreError) as raised:
            PostgresProfileStore(conninfo, schema="theirs", embedder=HashingEmbedder())
        assert str(raised.value) == (
            "the schema 'theirs' of this database is not a langchain-pad profile store: it "
            "holds other tables (profiles) and no store schema version. It was left "
            "untouched; pass schema= a new schema or a store's"
        )
        with psycopg.connect(conninfo) as connection:
            rows = connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'theirs'"
            ).fetchall()
        assert rows == [("profiles",)]
    finally:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute("DROP SCHEMA theirs CASCADE")


def test_a_read_only_store_reads_and_refuses_writes(conninfo):
    writer = PostgresProfileStore(conninfo, schema="ro_check", embedder=HashingEmbedder())
    try:
        writer.put(user("ana", "warm friendly tone", style=1.0))
        reader = PostgresProfileStore(
            conninfo, schema="ro_check", embedder=HashingEmbedder(), read_only=True
        )
        assert reader.require("ana").weights["style"] == 1.0
        assert reader.match("warm friendly tone").used == ["ana"]
        assert reader.check_integrity() == []
        assert reader.health()["read_only"] is True and reader.health()["ok"] is True
        with pytest.raises(ProfileStoreError, match=r"is read-only \(opened with read_only"):
            reader.put(user("bo", "short answers"))
        with pytest.raises(ProfileStoreError, match="cannot create one"):
            PostgresProfileStore(conninfo, schema="ro_missing", read_only=True)
        reader.close()
    finally:
        writer.close()
        writer.drop()


def test_two_stores_on_one_server_see_each_others_writes(conninfo):
    a = PostgresProfileStore(conninfo, schema="shared", embedder=HashingEmbedder())
    b = PostgresProfileStore(conninfo, schema="shared", embedder=HashingEmbedder())
    try:
        a.put(user("ana", "warm friendly tone", style=1.0))
        assert b.require("ana").weights["style"] == 1.0
        assert b.match("warm friendly tone").used == ["ana"]
        errors = []

        def write(store, n):
            try:
                for i in range(10):
                    current = store.require("ana")
                    store.put(current.model_copy(update={"description": f"v{n}-{i}"}))
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate((a, b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert a.require("ana").version == 21
        assert a.check_integrity() == []
    finally:
        a.close()
        b.close()
        a.drop()


def test_the_server_resolves_users_in_postgres(conninfo, loaded, tmp_path):
    """`langchain-pad serve --profiles postgresql://...`: the `user` field finds the profile."""
    openai = pytest.importorskip("openai")
    from langchain_pad.profiles import PreferenceProfile, reward_model_ref

    from ._persrm import save_perturbed
    from ._server import running_server

    persrm = save_perturbed(loaded, tmp_path / "persrm")
    store = PostgresProfileStore(conninfo, embedder=HashingEmbedder())
    store.put(
        PreferenceProfile(
            user_id="ana@example.org",
            weights={"expertise": 0.75},
            reward_model=reward_model_ref(persrm),
        )
    )
    store.close()
    args = ("--reward-model", persrm, "--profiles", conninfo, "--log-level", "warning")
    with running_server(*args, log=tmp_path / "server.log") as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)

        def ask(**extra):
            return client.chat.completions.create(
                model="smollm2-135m-instruct",
                messages=[{"role": "user", "content": "What is gravity?"}],
                max_tokens=8,
                temperature=0,
                **extra,
            )

        by_user = ask(user="ana@example.org")
        by_weights = ask(extra_body={"pad": {"weights": {"expertise": 0.75}}})
    assert by_user.choices[0].message.content == by_weights.choices[0].message.content
    assert by_user.model_extra["pad"]["profile"]["user_id"] == "ana@example.org"


@pytest.fixture(scope="module")
def langgraph_postgres_store(conninfo):
    """LangGraph's own PostgresStore (pgvector index) on the throwaway server."""
    pytest.importorskip("langgraph.store.postgres")
    from langgraph.store.postgres import PostgresStore

    embedder = HashingEmbedder()
    index = {
        "dims": embedder.dim,
        "embed": lambda texts: embedder.embed(list(texts)).tolist(),
        "fields": ["text"],
    }
    with PostgresStore.from_conn_string(conninfo, index=index) as store:
        store.setup()
        yield store


class TestLangGraphProfileStoreOnLangGraphsPostgresStore(ProfileStoreContract):
    """The LangGraph-backed profile store is not tied to the in-memory store: the same
    contract on LangGraph's PostgresStore, matching by its pgvector search."""

    @pytest.fixture(autouse=True)
    def _backing(self, langgraph_postgres_store):
        self.backing = langgraph_postgres_store

    def make_store(self, tmp_path, **kwargs):
        from langchain_pad.integrations.langgraph import LangGraphProfileStore

        namespace = "t_" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:16]
        return LangGraphProfileStore(self.backing, namespace=(namespace,), **kwargs)
