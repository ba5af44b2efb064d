"""The ProfileStore contract, run against the in-memory and the SQLite backends."""

from __future__ import annotations

from langchain_pad.profiles import InMemoryProfileStore, SQLiteProfileStore
from langchain_pad.profiles.testing import ProfileStoreContract


class TestInMemoryProfileStore(ProfileStoreContract):
    def make_store(self, tmp_path, **kwargs):
        return InMemoryProfileStore(**kwargs)


class TestSQLiteProfileStore(ProfileStoreContract):
    def make_store(self, tmp_path, **kwargs):
        tmp_path.mkdir(parents=True, exist_ok=True)
        return SQLiteProfileStore(tmp_path / "profiles.sqlite3", **kwargs)
