"""``PADRuntime(compile_steps=True)`` on the real model: one-token steps through
``torch.compile`` compute what the eager model computes, and a request runs on them.

One compilation (about a minute or two on 2 cores) serves the whole module.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from transformers import DynamicCache

from langchain_pad import PADChatModel
from langchain_pad.engine.compiled import CompiledSteps
from langchain_pad.runtime import PADRuntime

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def steps(loaded):
    return CompiledSteps(loaded.model)


def _cache_kwarg(model) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache`` (as the engine reads it)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _prefilled(loaded, ids: tuple[int, ...]) -> DynamicCache:
    cache = DynamicCache(config=loaded.model.config)
    loaded.model(
        input_ids=torch.tensor([ids]), use_cache=True, **{_cache_kwarg(loaded.model): cache}
    )
    return cache


def test_a_compiled_step_gives_the_eager_steps_logits(loaded, chat_ids, steps):
    ids = chat_ids("Why is the sky blue?")
    token = torch.tensor([[ids[-1]]])
    with torch.inference_mode():
        eager_cache, compiled_cache = _prefilled(loaded, ids[:-1]), _prefilled(loaded, ids[:-1])
        for step in range(3):  # three steps: the cache grows under the compiled graph
            position = torch.tensor([[len(ids) - 1 + step]])
            mask = torch.ones(1, len(ids) + step, dtype=torch.long)
            # the arguments the engine passes, so that the request below reuses the graph
            inputs = {
                "input_ids": token,
                "attention_mask": mask,
                "position_ids": position,
                "use_cache": True,
                "logits_to_keep": 1,
                "output_hidden_states": False,
            }
            kwarg = _cache_kwarg(loaded.model)
            eager = loaded.model(**inputs, **{kwarg: eager_cache})
            compiled = steps.forward(**inputs, **{kwarg: compiled_cache})
            assert steps.error is None, steps.error
            torch.testing.assert_close(compiled.logits, eager.logits, atol=2e-3, rtol=1e-3)
            token = eager.logits[:, -1].argmax(-1, keepdim=True)
    assert steps.compiled_calls == 3


def test_a_request_decodes_on_compiled_steps(loaded):
    no_eos = dataclasses.replace(loaded, eos_token_ids=frozenset())
    runtime = PADRuntime.from_loaded(no_eos, compile_steps=True)
    try:
        answer = PADChatModel(runtime=runtime, max_tokens=24).invoke("Why is the sky blue?")
        steps = runtime.scheduler.engine.compiled_steps
        assert steps is not None and steps.error is None, steps and steps.error
        assert steps.compiled_calls == 23  # the prefill is eager, every later step compiled
        words = str(answer.content).split()
        assert len(words) >= 10 and len(set(words)) >= 0.6 * len(words), answer.content
    finally:
        runtime.close()
