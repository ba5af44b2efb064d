"""The ProfileStore contract on LangGraph stores: with semantic search, and without."""

from __future__ import annotations

import pytest

from langchain_pad.profiles.testing import HashingEmbedder, ProfileStoreContract, user

pytest.importorskip("langgraph")

from langgraph.store.memory import InMemoryStore

from langchain_pad.integrations.langgraph import (
    LangGraphProfileStore,
    PADContext,
    escape_label,
    pad_kwargs,
    unescape_label,
)


def semantic_store(embedder: HashingEmbedder) -> InMemoryStore:
    return InMemoryStore(
        index={
            "dims": embedder.dim,
            "embed": lambda texts: embedder.embed(list(texts)).tolist(),
            "fields": ["text"],
        }
    )


class TestLangGraphProfileStoreWithSemanticSearch(ProfileStoreContract):
    def make_store(self, tmp_path, **kwargs):
        embedder = kwargs.get("embedder") or HashingEmbedder()
        return LangGraphProfileStore(semantic_store(embedder), **kwargs)


class TestLangGraphProfileStoreWithoutIndex(ProfileStoreContract):
    def make_store(self, tmp_path, **kwargs):
        return LangGraphProfileStore(InMemoryStore(), **kwargs)


def test_user_ids_are_escaped_in_namespaces():
    for uid in ("ana@example.org", "a.b%2E.c", "%", "..."):
        label = escape_label(uid)
        assert "." not in label
        assert unescape_label(label) == uid
    backing = semantic_store(HashingEmbedder())
    store = LangGraphProfileStore(backing, embedder=HashingEmbedder(), namespace=("app", "pad"))
    store.put(user("ana@example.org", "warm friendly tone", style=1.0))
    namespaces = backing.list_namespaces(prefix=("app", "pad"))
    assert ("app", "pad", "history", "ana@example%2Eorg") in namespaces
    assert store.match("warm friendly tone").used == ["ana@example.org"]
    with pytest.raises(ValueError):
        escape_label("")


def test_two_namespaces_in_one_store_are_separate():
    backing = InMemoryStore()
    a = LangGraphProfileStore(backing, embedder=HashingEmbedder(), namespace=("a",))
    b = LangGraphProfileStore(backing, embedder=HashingEmbedder(), namespace=("b",))
    a.put(user("ana", "short answers"))
    assert b.get("ana") is None
    assert a.count(kind="user") == 1 and b.count(kind="user") == 0
    assert a.count(kind="anchor") == b.count(kind="anchor") == 4  # the shipped PersRM's poles


def test_pad_kwargs_reads_dataclasses_dicts_and_objects():
    assert pad_kwargs(PADContext(user_id="ana")) == {"user_id": "ana"}
    assert pad_kwargs({"preference": "short", "other": 1}) == {"preference": "short"}
    assert pad_kwargs(None) == {}
    weights = {"expertise": 1.0}
    assert pad_kwargs(PADContext(weights=weights, preference="x")) == {
        "preference": "x",
        "weights": weights,
    }
