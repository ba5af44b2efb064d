"""Per-token PAD data through LangChain's channels, and the handler that collects it.

Runs the real chat model, scheduler and PAD guide on the tiny random Llama with a
perturbed PersRM, so rewards are non-zero and guidance changes tokens.
"""

from __future__ import annotations

import asyncio
import math
import threading
import warnings

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.outputs import ChatGenerationChunk

from langchain_pad._messages import render_prompt, to_turns
from langchain_pad.callbacks import AsyncTokenRewardHandler, TokenRewardHandler
from langchain_pad.engine import DecodingEngine, GenerationRequest, SamplingParams
from langchain_pad.engine.pad import PADGuidance, PADGuide
from langchain_pad.reward_model import PersonalizedRewardModel
from langchain_pad.traces import RunTrace, summarize

from .conftest import EOS_ID

WEIGHTS = [3.0, -2.0, 0.5]
PAD_KEYS = {
    "token_id",
    "token_text",
    "reward",
    "features",
    "base_logprob",
    "base_rank",
    "changed",
    "base_token_id",
    "base_token_text",
}


@pytest.fixture
def llm(tiny_chat_model):
    # the guard off: these tests compare the chat model's rewards with the bare engine's
    return tiny_chat_model(max_tokens=10, repetition_penalty=1.0, plausibility=0.0)


@pytest.fixture(scope="module")
def engine_rewards(tiny_model, tiny_loaded, tiny_persrm_dir):
    """What the engine itself computes for a prompt, decoded alone, outside LangChain."""
    engine = DecodingEngine(
        tiny_model, tiny_loaded.tokenizer, eos_token_ids=frozenset({EOS_ID}), context_length=128
    )
    guide = PADGuide(PersonalizedRewardModel.load(tiny_persrm_dir, tiny_model))

    def run(prompt: str, weights: list[float], max_tokens: int = 10):
        ids = render_prompt(tiny_loaded.tokenizer, to_turns([HumanMessage(prompt)]))
        request = GenerationRequest(tuple(ids), SamplingParams(max_tokens), PADGuidance(weights))
        out = engine.generate([request], guide)[0]
        return out.token_ids, [r.reward for r in out.records]

    return run


def assert_matches_engine(trace: RunTrace, engine_rewards, prompt: str, weights):
    ids, rewards = engine_rewards(prompt, weights)
    assert [t.token_id for t in trace.tokens] == ids
    assert [t.reward for t in trace.tokens] == pytest.approx(rewards, abs=1e-5)


# ---------------------------------------------------------------------- chunks


def test_every_chunk_carries_exactly_its_tokens_pad_data(llm):
    chunks = list(llm.stream("hi", raw_weights=WEIGHTS))
    assert len(chunks) == 10
    for chunk in chunks:
        pad = chunk.response_metadata["pad"]
        assert set(pad) == PAD_KEYS
        assert all(len(values) == 1 for values in pad.values())
        assert pad["token_id"] == chunk.response_metadata["token_ids"]
        assert len(pad["features"][0]) == 3
        assert pad["changed"][0] == (pad["base_token_id"][0] != pad["token_id"][0])
    assert any(c.response_metadata["pad"]["changed"][0] for c in chunks)
    # only the last chunk carries run-level floats: nothing can collide when merging
    assert ["pad_summary" in c.response_metadata for c in chunks] == [False] * 9 + [True]


def test_merged_chunks_equal_the_invoked_message(llm):
    invoked = llm.invoke("hi", raw_weights=WEIGHTS)
    chunks = list(llm.stream("hi", raw_weights=WEIGHTS))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert merged.content == invoked.content
    assert merged.response_metadata["pad"] == invoked.response_metadata["pad"]
    assert merged.response_metadata["pad_summary"] == invoked.response_metadata["pad_summary"]
    pad = invoked.response_metadata["pad"]
    assert all(len(values) == 10 for values in pad.values())


def test_summary_on_the_last_chunk_matches_the_tokens(llm):
    message = llm.invoke("hi", raw_weights=WEIGHTS)
    trace = RunTrace.from_message(message)
    summary = message.response_metadata["pad_summary"]
    recomputed = summarize(trace.tokens, trace.axes, trace.weights, trace.beta)
    assert set(summary) == set(recomputed)
    for key, value in summary.items():  # approx() compares one level of nesting
        assert value == pytest.approx(recomputed[key])
    assert summary["changed_share"] == sum(t.changed for t in trace.tokens) / 10
    assert sum(summary["mean_reward_by_axis"].values()) == pytest.approx(summary["mean_reward"])
    assert message.response_metadata["pad_beta"] == 1.0  # the reward model's own beta


def test_token_texts_join_into_the_answer(llm):
    message = llm.invoke("hi", raw_weights=WEIGHTS, stop=["\x00"])
    trace = RunTrace.from_message(message)
    assert trace.text.startswith(message.content)
    for token in trace.tokens:
        if not token.changed:
            assert token.base_token_text == token.text


def test_unguided_runs_still_give_token_texts(tiny_chat_model):
    message = tiny_chat_model(reward_model=None).invoke("hi")
    assert "pad" not in message.response_metadata
    trace = RunTrace.from_message(message, label="base")
    assert trace.text == message.content
    assert not trace.guided and all(t.reward is None for t in trace.tokens)
    assert trace.title == "base"


class MessageReader(BaseCallbackHandler):
    """A handler that looks only at the chunk's message, as LangGraph's does."""

    def __init__(self) -> None:
        self.rewards: list[float] = []

    def on_llm_new_token(self, token, *, chunk=None, **kwargs) -> None:
        pad = chunk.message.response_metadata.get("pad") if chunk is not None else None
        if pad:
            self.rewards.extend(pad["reward"])


async def test_callbacks_reading_only_the_message_see_every_token(llm):
    expected = llm.invoke("hi", raw_weights=WEIGHTS).response_metadata["pad"]["reward"]
    assert len(expected) == 10
    reader = MessageReader()
    llm.invoke("hi", raw_weights=WEIGHTS, config={"callbacks": [reader]})
    assert reader.rewards == expected
    reader = MessageReader()
    await llm.ainvoke("hi", raw_weights=WEIGHTS, config={"callbacks": [reader]})
    assert reader.rewards == expected
    reader = MessageReader()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        await (
            await llm.astream_events(
                "hi", version="v3", config={"callbacks": [reader]}, raw_weights=WEIGHTS
            )
        )
    assert reader.rewards == expected


# ---------------------------------------------------------------------- the handler


def test_handler_on_invoke_records_each_token_once_with_the_engines_rewards(llm, engine_rewards):
    handler = TokenRewardHandler()
    message = llm.invoke("hi", raw_weights=WEIGHTS, config={"callbacks": [handler]})
    (trace,) = handler.traces
    assert len(trace.tokens) == message.usage_metadata["output_tokens"] == 10
    assert [t.index for t in trace.tokens] == list(range(10))
    assert [t.reward for t in trace.tokens] == message.response_metadata["pad"]["reward"]
    assert_matches_engine(trace, engine_rewards, "hi", WEIGHTS)
    assert trace.done and trace.error is None and trace.prompt == "hi"
    assert trace.weights == dict(zip(trace.axes, WEIGHTS, strict=True))
    assert trace.summary == message.response_metadata["pad_summary"]


def test_handler_on_stream(llm, engine_rewards):
    handler = TokenRewardHandler()
    chunks = list(llm.stream("hi", raw_weights=WEIGHTS, config={"callbacks": [handler]}))
    (trace,) = handler.traces
    assert len(trace.tokens) == len(chunks) == 10
    assert_matches_engine(trace, engine_rewards, "hi", WEIGHTS)


def test_handler_on_batch_keeps_each_run_apart(llm, engine_rewards):
    handler = TokenRewardHandler()
    prompts = ["hi", "yo", "hey", "ok"]
    labels = [f"user {i}" for i in range(4)]
    configs = [{"callbacks": [handler], "metadata": {"pad_label": label}} for label in labels]
    messages = llm.batch(prompts, configs, raw_weights=WEIGHTS)
    by_label = {t.label: t for t in handler.traces if t.label}
    assert sorted(by_label) == labels
    for label, prompt, message in zip(labels, prompts, messages, strict=True):
        trace = by_label[label]
        assert trace.prompt == prompt
        assert trace.run_id in message.id
        assert len(trace.tokens) == message.usage_metadata["output_tokens"]
        assert [t.reward for t in trace.tokens] == message.response_metadata["pad"]["reward"]
        assert_matches_engine(trace, engine_rewards, prompt, WEIGHTS)


def test_handler_with_users_streaming_from_several_threads(llm, engine_rewards):
    handler = TokenRewardHandler()
    users = {f"u{i}": [float(i - 3), 1.0, 0.0] for i in range(6)}
    errors: list[BaseException] = []
    start = threading.Barrier(len(users))

    def stream(label: str, weights: list[float]) -> None:
        try:
            start.wait()
            config = {"callbacks": [handler], "metadata": {"pad_label": label}}
            for _ in llm.stream("hi", config, raw_weights=weights):
                pass
        except BaseException as exc:  # reported below, on the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=stream, args=item) for item in users.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    traces = {t.label: t for t in handler.traces}
    assert sorted(traces) == sorted(users)
    for label, weights in users.items():
        assert len(traces[label].tokens) == 10
        assert_matches_engine(traces[label], engine_rewards, "hi", weights)
    table = handler.table()
    assert len(table["reward"]) == 60
    assert all(len(column) == 60 for column in table.values())


async def test_handler_on_astream_events_v2(llm, engine_rewards):
    handler = TokenRewardHandler()
    events = [
        event
        async for event in llm.astream_events(
            "hi", version="v2", config={"callbacks": [handler]}, raw_weights=WEIGHTS
        )
    ]
    streamed = [e["data"]["chunk"] for e in events if e["event"] == "on_chat_model_stream"]
    assert len(streamed) == 10
    assert all(len(c.response_metadata["pad"]["reward"]) == 1 for c in streamed)
    (trace,) = handler.traces
    assert [t.reward for t in trace.tokens] == [
        c.response_metadata["pad"]["reward"][0] for c in streamed
    ]
    assert_matches_engine(trace, engine_rewards, "hi", WEIGHTS)


async def test_handler_on_astream_events_v3(llm, engine_rewards):
    handler = TokenRewardHandler()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # v3 is a beta API and says so
        stream = await llm.astream_events(
            "hi", version="v3", config={"callbacks": [handler]}, raw_weights=WEIGHTS
        )
        message = await stream
    (trace,) = handler.traces
    assert len(trace.tokens) == message.usage_metadata["output_tokens"] == 10
    assert_matches_engine(trace, engine_rewards, "hi", WEIGHTS)
    assert trace.summary == message.response_metadata["pad_summary"]
    # v3 keeps only the last chunk's metadata: the trace must come from the handler
    with pytest.raises(ValueError, match="TokenRewardHandler"):
        RunTrace.from_message(message)


def test_handler_on_sync_stream_events_v3(llm, engine_rewards):
    handler = TokenRewardHandler()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stream = llm.stream_events(
            "hi", version="v3", config={"callbacks": [handler]}, raw_weights=WEIGHTS
        )
        text = "".join(stream.text)
    (trace,) = handler.traces
    assert trace.text.startswith(text) and len(trace.tokens) == 10
    assert_matches_engine(trace, engine_rewards, "hi", WEIGHTS)


async def test_async_handler_on_ainvoke_astream_and_abatch(llm, engine_rewards):
    handler = AsyncTokenRewardHandler()
    config = {"callbacks": [handler]}
    await llm.ainvoke("hi", config, raw_weights=WEIGHTS)
    async for _ in llm.astream("yo", config, raw_weights=WEIGHTS):
        pass
    await llm.abatch(["hey", "ok"], config, raw_weights=WEIGHTS)
    traces = {t.prompt: t for t in handler.traces}
    assert sorted(traces) == ["hey", "hi", "ok", "yo"]
    for prompt, trace in traces.items():
        assert len(trace.tokens) == 10 and trace.done
        assert_matches_engine(trace, engine_rewards, prompt, WEIGHTS)


async def test_sync_handler_in_concurrent_async_runs(llm):
    handler = TokenRewardHandler()

    async def one(i: int):
        config = {"callbacks": [handler], "metadata": {"pad_label": str(i)}}
        return await llm.ainvoke("hi", config, raw_weights=[float(i), 0.0, 0.0])

    messages = await asyncio.gather(*(one(i) for i in range(5)))
    traces = {t.label: t for t in handler.traces}
    for i, message in enumerate(messages):
        assert [t.reward for t in traces[str(i)].tokens] == message.response_metadata["pad"][
            "reward"
        ]


def test_records_and_table_are_plain_data(llm):
    handler = TokenRewardHandler()
    llm.invoke("hi", raw_weights=WEIGHTS, config={"callbacks": [handler]})
    (trace,) = handler.traces
    records = handler.records(trace.run_id)
    assert records == trace.tokens == handler.records()
    assert records[0].to_dict()["features"] == list(records[0].features)
    table = handler.table(trace.run_id)
    assert table["reward"] == [r.reward for r in records]
    assert table["phi:informativeness"] == [r.features[1] for r in records]
    assert set(table) >= {"run_id", "index", "text", "changed", "base_token_text"}
    # the handler hands out copies: changing them does not change what it holds
    trace.tokens.clear()
    assert len(handler.trace(trace.run_id).tokens) == 10
    assert handler.pop(trace.run_id).tokens == records
    assert handler.traces == []
    llm.invoke("hi", raw_weights=WEIGHTS, config={"callbacks": [handler]})
    handler.clear()
    assert handler.traces == []


def test_handler_records_errors(llm):
    handler = TokenRewardHandler()
    with pytest.raises(ValueError, match="got 1 weights but the reward model has 3 axes"):
        llm.invoke("hi", weights=[1.0], config={"callbacks": [handler]})
    (trace,) = handler.traces
    assert trace.done and "got 1 weights" in trace.error


def test_chunks_that_are_not_tokens_are_ignored():
    handler = TokenRewardHandler()
    import uuid

    run = uuid.uuid4()
    handler.on_llm_new_token("", chunk=ChatGenerationChunk(message=AIMessageChunk("")), run_id=run)
    handler.on_llm_new_token("x", chunk=None, run_id=run)
    assert handler.records() == []


def test_generate_from_stream_keeps_every_list(llm):
    chunks = llm._stream([HumanMessage("hi")], raw_weights=WEIGHTS)
    result = generate_from_stream(chunks)
    info = result.generations[0].generation_info
    assert all(len(values) == 10 for values in info["pad"].values())
    assert all(math.isfinite(r) for r in info["pad"]["reward"])


def test_many_threads_hammering_one_handler_lose_nothing():
    import uuid

    handler = TokenRewardHandler()
    runs = [uuid.uuid4() for _ in range(16)]
    start = threading.Barrier(len(runs))

    def feed(run):
        start.wait()
        for i in range(300):
            info = {"token_ids": [i], "token_texts": [str(i)], "pad": {"reward": [float(i)]}}
            chunk = ChatGenerationChunk(message=AIMessageChunk(str(i)), generation_info=info)
            handler.on_llm_new_token(str(i), chunk=chunk, run_id=run)
            if i % 50 == 0:
                handler.table()  # readers run while writers write

    threads = [threading.Thread(target=feed, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for run in runs:
        tokens = handler.trace(run).tokens
        assert [t.index for t in tokens] == list(range(300))
        assert [t.reward for t in tokens] == [float(i) for i in range(300)]
