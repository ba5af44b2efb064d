"""The token-reward handler on the real embedded model: one record per token, every way
of calling the model, with the rewards the engine computes when it decodes alone."""

from __future__ import annotations

import warnings

import pytest
from langchain_core.messages import HumanMessage

from langchain_pad import PADChatModel, TokenRewardHandler
from langchain_pad._messages import render_prompt, to_turns
from langchain_pad.engine import DecodingEngine, GenerationRequest, SamplingParams
from langchain_pad.engine.pad import PADGuidance, PADGuide
from langchain_pad.reward_model import PersonalizedRewardModel

WEIGHTS = {"expertise": 0.75, "style": -0.5}  # raw 3 and -2 (4 per pole)
VECTOR = (3.0, 0.0, -2.0)
N = 16
QUESTIONS = ["What is gravity?", "Describe a cat.", "How do plants grow?"]


@pytest.fixture(scope="module")
def llm(perturbed_reward_model_dir):
    # the guard off: the answers are compared with the bare engine's
    return PADChatModel(
        max_tokens=N,
        reward_model=perturbed_reward_model_dir,
        repetition_penalty=1.0,
        plausibility=0.0,
    )


@pytest.fixture(scope="module")
def engine_run(loaded, perturbed_reward_model_dir):
    engine = DecodingEngine(
        loaded.model,
        loaded.tokenizer,
        eos_token_ids=loaded.eos_token_ids,
        context_length=loaded.context_length,
    )
    guide = PADGuide(PersonalizedRewardModel.load(perturbed_reward_model_dir, loaded.model))

    def run(question: str):
        ids = render_prompt(loaded.tokenizer, to_turns([HumanMessage(question)]))
        request = GenerationRequest(tuple(ids), SamplingParams(N), PADGuidance(VECTOR))
        return engine.generate([request], guide)[0]

    return run


def check(trace, engine_run, question: str) -> None:
    out = engine_run(question)
    assert [t.token_id for t in trace.tokens] == out.token_ids  # one record per token
    assert [t.reward for t in trace.tokens] == pytest.approx(
        [r.reward for r in out.records], abs=1e-4
    )
    assert [t.changed for t in trace.tokens] == [r.changed for r in out.records]
    assert trace.text == out.text or trace.text.startswith(out.text)


def test_invoke_stream_and_batch(llm, engine_run):
    handler = TokenRewardHandler()
    config = {"callbacks": [handler]}
    llm.invoke(QUESTIONS[0], config, weights=WEIGHTS)
    for _ in llm.stream(QUESTIONS[1], config, weights=WEIGHTS):
        pass
    llm.batch(QUESTIONS, config, weights=WEIGHTS)
    traces = handler.traces
    assert len(traces) == 5
    for trace in traces:
        assert trace.done and trace.error is None
        check(trace, engine_run, trace.prompt)


async def test_astream_events_v2_and_v3(llm, engine_run):
    handler = TokenRewardHandler()
    config = {"callbacks": [handler]}
    streamed = 0
    async for event in llm.astream_events(QUESTIONS[2], config, version="v2", weights=WEIGHTS):
        if event["event"] == "on_chat_model_stream":
            streamed += 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # v3 is beta and warns
        await (await llm.astream_events(QUESTIONS[0], config, version="v3", weights=WEIGHTS))
    first, second = handler.traces
    assert len(first.tokens) == streamed
    check(first, engine_run, QUESTIONS[2])
    check(second, engine_run, QUESTIONS[0])
    assert second.summary["tokens"] == len(second.tokens)
