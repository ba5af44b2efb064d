"""A LangGraph agent serving two users with different preference profiles.

Run: `.venv/bin/python examples/langgraph_two_users.py [max_tokens]`.

The profiles live in a LangGraph store (here ``InMemoryStore`` with semantic search
over the offline all-MiniLM-L6-v2 embeddings; a ``PostgresStore`` works the same way).
The graph reads whom it answers from its run context (``context_schema``), and its
answer streams token by token with ``stream_mode="messages"``.
"""

from __future__ import annotations

import sys

from _demo import reward_model_dir
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.store.memory import InMemoryStore

from langchain_pad import PADChatModel
from langchain_pad.embeddings import SentenceTransformerEmbedder
from langchain_pad.integrations.langgraph import LangGraphProfileStore, PADContext, chat_node
from langchain_pad.models import resolve_reward_model
from langchain_pad.profiles import PreferenceProfile, reward_model_ref

QUESTION = "What is a black hole?"


def main(max_tokens: int = 48) -> None:
    persrm = reward_model_dir()
    ref = reward_model_ref(resolve_reward_model(persrm))
    embedder = SentenceTransformerEmbedder()
    backing = InMemoryStore(
        index={"dims": 384, "embed": lambda texts: embedder.embed(list(texts)).tolist()}
    )
    profiles = LangGraphProfileStore(backing, embedder=embedder, reward_model=persrm)
    profiles.put(
        PreferenceProfile(
            user_id="ana@example.org",
            description="I'm an astrophysicist: precise terms, short answers.",
            weights={"expertise": 1.0, "informativeness": -1.0},
            reward_model=ref,
        )
    )
    profiles.put(
        PreferenceProfile(
            user_id="ben",
            description="I'm ten: simple words and tell me everything, please.",
            aliases=["explain it like I'm a kid"],
            weights={"expertise": -1.0, "informativeness": 1.0},
            reward_model=ref,
        )
    )

    llm = PADChatModel(max_tokens=max_tokens, reward_model=persrm, profile_store=profiles)
    graph = (
        StateGraph(MessagesState, context_schema=PADContext)
        .add_node("answer", chat_node(llm, system_prompt="You are a helpful assistant."))
        .add_edge(START, "answer")
        .compile()
    )

    for user in ("ana@example.org", "ben"):
        print(f"[{user}] ", end="", flush=True)
        for token, _meta in graph.stream(
            {"messages": [("user", QUESTION)]},
            context=PADContext(user_id=user),
            stream_mode="messages",
        ):
            print(token.content, end="", flush=True)
        print()

    # a user nobody has seen, described in words: matched to the nearest profile
    context = PADContext(preference="Explain it to me like I'm a kid")
    reply = graph.invoke({"messages": [("user", QUESTION)]}, context=context)["messages"][-1]
    used = reply.response_metadata["pad_profile"]["used"]
    print(f"[new user, matched to {used or 'nobody'}] {reply.content}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 48)
