"""The engine on the real model: batching, stops, multi-byte text, cancellation."""

from __future__ import annotations

import torch

from langchain_pad.engine import DecodingEngine, GenerationRequest, SamplingParams

QUESTIONS = [
    "What is the capital of France?",
    "Write a short poem about autumn leaves.",
    "Explain what a prime number is.",
    "Give three tips for better sleep.",
]


def engine_for(loaded) -> DecodingEngine:
    return DecodingEngine(
        loaded.model,
        loaded.tokenizer,
        eos_token_ids=loaded.eos_token_ids,
        context_length=loaded.context_length,
    )


def test_batch_equals_alone_equals_generate(loaded, chat_ids):
    engine = engine_for(loaded)
    requests = [GenerationRequest(chat_ids(q), SamplingParams(32)) for q in QUESTIONS]
    batched = engine.generate(requests)
    assert engine.last_stats.batch_sizes[0] == len(QUESTIONS)
    for req, out in zip(requests, batched, strict=True):
        alone = engine.generate([req])[0]
        ids = torch.tensor([req.prompt_ids])
        reference = loaded.model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False
        )[0, ids.shape[1] :].tolist()
        assert out.token_ids == alone.token_ids == reference
        assert out.text == loaded.tokenizer.decode(reference, skip_special_tokens=True)


def test_stop_sequence_spanning_tokens(loaded, chat_ids):
    engine = engine_for(loaded)
    prompt = chat_ids(QUESTIONS[2])
    full = engine.generate([GenerationRequest(prompt, SamplingParams(40))])[0]
    # pick a stop string that starts inside one token and ends inside another
    tok = loaded.tokenizer
    pieces = [tok.decode(full.token_ids[: i + 1], skip_special_tokens=True) for i in range(12)]
    boundary = len(pieces[5])
    stop = full.text[boundary - 2 : boundary + 3]
    assert len(stop) == 5 and full.text.find(stop) == boundary - 2
    stopped = engine.generate([GenerationRequest(prompt, SamplingParams(40, stop=(stop,)))])[0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == full.text[: boundary - 2]
    assert stop not in stopped.text


def test_multibyte_stream_matches_full_decode(loaded, chat_ids):
    engine = engine_for(loaded)
    prompt = chat_ids("Translate 'thank you very much' into Japanese, Chinese and Korean.")
    events = list(engine.stream([GenerationRequest(prompt, SamplingParams(48))]))
    ids = [e.token_id for e in events]
    streamed = "".join(e.text for e in events)
    assert streamed == loaded.tokenizer.decode(ids, skip_special_tokens=True)
    assert any(ord(ch) > 0x2E80 for ch in streamed), streamed  # CJK was produced
    assert all("\ufffd" not in e.text for e in events)
    # some character really was split across tokens (an empty delta before it)
    assert any(e.text == "" for e in events[:-1])


def test_log_probs_are_the_base_models(loaded, chat_ids):
    engine = engine_for(loaded)
    prompt = chat_ids(QUESTIONS[0])
    out = engine.generate([GenerationRequest(prompt, SamplingParams(4))])[0]
    with torch.inference_mode():
        logits = loaded.model(torch.tensor([list(prompt)])).logits[0, -1].float()
    expected = torch.log_softmax(logits, -1)[out.token_ids[0]].item()
    assert abs(out.logprobs[0] - expected) < 1e-4
