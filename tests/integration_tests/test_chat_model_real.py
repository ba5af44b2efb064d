"""PADChatModel on the real model: streaming, async, batching, cancellation, errors."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage

from langchain_pad import PADChatModel
from langchain_pad.engine import PromptTooLongError
from langchain_pad.models import ModelLoadError, convert_embedded_model, load_model


class TokenCounter(BaseCallbackHandler):
    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token, **kwargs) -> None:
        self.tokens.append(token)


@pytest.fixture(scope="module")
def llm(loaded) -> PADChatModel:
    return PADChatModel(max_tokens=24)


def scheduler(llm: PADChatModel):
    return llm.get_runtime().scheduler


def test_invoke_returns_usage_and_metadata(llm):
    result = llm.invoke("What is 2 + 2?")
    assert result.content
    assert result.usage_metadata["input_tokens"] == llm.get_num_tokens_from_messages(
        [HumanMessage("What is 2 + 2?")]
    )
    assert result.usage_metadata["output_tokens"] == len(result.response_metadata["token_ids"])
    assert result.response_metadata["model_name"] == "smollm2-135m-instruct"
    assert result.response_metadata["finish_reason"] in {"stop", "length"}


def test_one_callback_and_one_chunk_per_token(llm):
    counter = TokenCounter()
    chunks = list(llm.stream("Name three fruits.", config={"callbacks": [counter]}))
    output_tokens = sum((c.usage_metadata or {}).get("output_tokens", 0) for c in chunks)
    assert len(chunks) == output_tokens == len(counter.tokens)
    counter = TokenCounter()
    result = llm.invoke("Name three fruits.", config={"callbacks": [counter]})
    assert len(counter.tokens) == result.usage_metadata["output_tokens"]
    assert "".join(counter.tokens) == result.content


def test_stream_async_and_invoke_agree(llm):
    question = "Describe the moon in one sentence."
    invoked = llm.invoke(question).content
    streamed = "".join(str(c.content) for c in llm.stream(question))

    async def run() -> tuple[str, str]:
        a = (await llm.ainvoke(question)).content
        b = "".join([str(c.content) async for c in llm.astream(question)])
        return str(a), b

    ainvoked, astreamed = asyncio.run(run())
    assert invoked == streamed == ainvoked == astreamed


def test_batch_is_one_real_batch_and_matches_invoke(llm):
    questions = ["Say hello.", "What is rain?", "Name a planet.", "What is 3 + 5?"]
    sched = scheduler(llm)
    waves_before = len(sched.wave_sizes)
    answers = llm.batch(questions)
    assert sched.wave_sizes[waves_before:] == [4]
    assert [a.content for a in answers] == [llm.invoke(q).content for q in questions]


def test_abatch_is_one_real_batch(llm):
    sched = scheduler(llm)
    waves_before = len(sched.wave_sizes)
    answers = asyncio.run(llm.abatch(["Hi!", "Bye!", "Thanks!"]))
    assert len(answers) == 3 and all(isinstance(a, AIMessage) for a in answers)
    assert sched.wave_sizes[waves_before:] == [3]


def test_breaking_out_of_a_stream_cancels_generation(llm):
    sched = scheduler(llm)
    for i, _chunk in enumerate(llm.stream("Write a very long story.", max_tokens=400)):
        if i == 2:
            break
    llm.invoke("ok", max_tokens=2)  # queued behind the cancelled wave, if still running
    cancelled_wave, next_wave = sched.wave_stats[-2:]
    # the long wave stopped right after the break instead of decoding 400 tokens
    assert cancelled_wave.forward_passes <= 20  # a few steps of hand-over lag, not 400
    assert next_wave.forward_passes <= 2


def test_async_stream_cancellation(llm):
    async def run() -> int:
        count = 0
        async for _chunk in llm.astream("Write a very long story.", max_tokens=400):
            count += 1
            if count == 3:
                break
        return count

    assert asyncio.run(run()) == 3
    llm.invoke("ok", max_tokens=2)
    cancelled_wave, next_wave = scheduler(llm).wave_stats[-2:]
    assert cancelled_wave.forward_passes <= 20
    assert next_wave.forward_passes <= 2


def test_stop_is_not_returned(llm):
    full = llm.invoke("List the numbers from one to ten, one per line.", max_tokens=40).content
    assert "\n" in full
    cut = llm.invoke("List the numbers from one to ten, one per line.", max_tokens=40, stop=["\n"])
    assert cut.content == full.split("\n")[0]
    assert cut.response_metadata["finish_reason"] == "stop"


def test_trailing_ai_message_is_continued(llm):
    result = llm.invoke([HumanMessage("Name a colour."), AIMessage("My favourite colour is")])
    assert result.content
    assert not result.content.startswith("My favourite colour is")


def test_prompt_longer_than_context_is_a_clear_error(llm):
    with pytest.raises(PromptTooLongError, match="context holds 8192 tokens"):
        llm.invoke("word " * 9000)


def test_timeout(llm):
    slow = PADChatModel(max_tokens=300, timeout=0.3)
    with pytest.raises(TimeoutError, match="timeout=0.3"):
        slow.invoke("Write a very long story.")


def test_corrupt_converted_model_says_what_to_run(loaded, tmp_path, monkeypatch):
    source = convert_embedded_model(show_progress=False)
    target = tmp_path / "models" / "smollm2-135m-instruct"
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.name == "model.safetensors":
            with open(target / path.name, "wb") as f:
                f.truncate(path.stat().st_size)  # same size, all zeros: corrupt
        else:
            os.symlink(path, target / path.name)
    marker = json.loads((source / "langchain_pad_conversion.json").read_text())
    assert (
        Path(target / "model.safetensors").stat().st_size
        == marker["file_sizes"]["model.safetensors"]
    )
    monkeypatch.setenv("LANGCHAIN_PAD_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError, match="langchain-pad models convert --force"):
        load_model()
