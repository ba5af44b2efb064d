"""LangGraph on the real model: a graph serving two users by run context, streamed.

Profiles live in a LangGraph ``InMemoryStore`` with semantic search over the offline
all-MiniLM-L6-v2 embeddings (384-d); PAD uses a perturbed, untrained PersRM.
"""

from __future__ import annotations

import pytest

pytest.importorskip("langgraph")

from langgraph.graph import START, MessagesState, StateGraph
from langgraph.store.memory import InMemoryStore

from langchain_pad import PADChatModel
from langchain_pad.embeddings import SentenceTransformerEmbedder
from langchain_pad.integrations.langgraph import LangGraphProfileStore, PADContext, chat_node
from langchain_pad.profiles import PreferenceProfile, reward_model_ref

from ._persrm import save_perturbed

ANA = {"expertise": 0.75, "style": -0.5}  # strengths: raw / 4 on the test PersRM
BEN = {"expertise": -0.75, "style": 0.5}
QUESTION = "What is gravity?"


@pytest.fixture(scope="module")
def reward_model_dir(loaded, tmp_path_factory):
    return save_perturbed(loaded, tmp_path_factory.mktemp("persrm"))


@pytest.fixture(scope="module")
def store(reward_model_dir):
    embedder = SentenceTransformerEmbedder()
    backing = InMemoryStore(
        index={"dims": 384, "embed": lambda texts: embedder.embed(list(texts)).tolist()}
    )
    # the store serves the perturbed PersRM (no anchors.json): only the users' profiles
    store = LangGraphProfileStore(backing, embedder=embedder, reward_model=reward_model_dir)
    ref = reward_model_ref(reward_model_dir)
    store.put(
        PreferenceProfile(
            user_id="ana@example.org",
            description="I'm a physicist: give me technical depth and precise terms.",
            weights=ANA,
            reward_model=ref,
        )
    )
    store.put(
        PreferenceProfile(
            user_id="ben",
            description="I'm seven years old, please use simple words and be friendly.",
            weights=BEN,
            reward_model=ref,
        )
    )
    return store


@pytest.fixture(scope="module")
def llm(reward_model_dir, store):
    return PADChatModel(max_tokens=16, reward_model=reward_model_dir, profile_store=store)


@pytest.fixture(scope="module")
def graph(llm):
    return (
        StateGraph(MessagesState, context_schema=PADContext)
        .add_node("answer", chat_node(llm))
        .add_edge(START, "answer")
        .compile()
    )


def answer(graph, context):
    out = graph.invoke({"messages": [("user", QUESTION)]}, context=context)
    return out["messages"][-1]


def test_the_graph_answers_each_user_with_their_profile(graph, llm):
    ana = answer(graph, PADContext(user_id="ana@example.org"))
    ben = answer(graph, PADContext(user_id="ben"))
    assert ana.content == llm.invoke(QUESTION, weights=ANA).content
    assert ben.content == llm.invoke(QUESTION, weights=BEN).content
    assert ana.content != ben.content
    assert ana.response_metadata["pad_profile"]["user_id"] == "ana@example.org"


def test_an_unseen_preference_is_matched_by_the_stores_semantic_search(graph, store):
    result = store.match("Explain it like I'm a little kid, simple words please")
    assert result.used and result.used[0] == "ben"
    reply = answer(graph, PADContext(preference="Explain it like I'm a little kid"))
    assert reply.response_metadata["pad_profile"]["source"] == "preference"
    assert reply.response_metadata["pad_profile"]["used"][0] == "ben"


def test_stream_mode_messages_streams_tokens_per_user(graph):
    expected = answer(graph, PADContext(user_id="ana@example.org")).content
    chunks = [
        message
        for message, meta in graph.stream(
            {"messages": [("user", QUESTION)]},
            context=PADContext(user_id="ana@example.org"),
            stream_mode="messages",
        )
        if meta["langgraph_node"] == "answer"
    ]
    assert len(chunks) > 3  # token by token, not one message at the end
    assert "".join(str(c.content) for c in chunks) == expected


async def test_async_graph_with_context(graph, llm):
    out = await graph.ainvoke({"messages": [("user", QUESTION)]}, context=PADContext(weights=BEN))
    assert out["messages"][-1].content == llm.invoke(QUESTION, weights=BEN).content
