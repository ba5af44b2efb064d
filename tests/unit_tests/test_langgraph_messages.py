"""LangGraph ``stream_mode="messages"`` delivers every token's PAD data.

LangGraph streams the chunk messages it sees in ``on_llm_new_token``: the per-token
data has to be on the message, not only in ``generation_info``.
"""

from __future__ import annotations

from langchain_core.messages import AIMessageChunk
from langgraph.graph import START, MessagesState, StateGraph

from langchain_pad.callbacks import TokenRewardHandler

WEIGHTS = [2.0, 0.0, -1.0]


def graph_with(llm):
    def answer(state: MessagesState) -> dict:
        return {"messages": [llm.invoke(state["messages"], raw_weights=WEIGHTS)]}

    builder = StateGraph(MessagesState)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    return builder.compile()


def test_messages_stream_mode_carries_pad_data_per_token(tiny_chat_model):
    handler = TokenRewardHandler()
    graph = graph_with(tiny_chat_model(max_tokens=8))
    items = list(
        graph.stream(
            {"messages": [("user", "hi")]}, {"callbacks": [handler]}, stream_mode="messages"
        )
    )
    chunks = [m for m, meta in items if isinstance(m, AIMessageChunk)]
    assert all(meta["langgraph_node"] == "answer" for _, meta in items)
    assert len(chunks) == 8
    for chunk in chunks:
        assert len(chunk.response_metadata["pad"]["reward"]) == 1
    streamed = [c.response_metadata["pad"]["reward"][0] for c in chunks]
    (trace,) = handler.traces
    assert [t.reward for t in trace.tokens] == streamed
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert merged.response_metadata["pad"]["reward"] == streamed
    assert merged.response_metadata["pad_summary"]["tokens"] == 8


async def test_messages_stream_mode_async(tiny_chat_model):
    graph = graph_with(tiny_chat_model(max_tokens=6))
    chunks = [
        m
        async for m, _ in graph.astream({"messages": [("user", "hi")]}, stream_mode="messages")
        if isinstance(m, AIMessageChunk)
    ]
    assert len(chunks) == 6
    assert all(len(c.response_metadata["pad"]["features"][0]) == 3 for c in chunks)
