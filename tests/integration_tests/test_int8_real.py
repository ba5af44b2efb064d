"""``dtype="int8"`` on the real model and the shipped PersRM.

Weight-only int8 linears change the answers (benchmarks/results/dtype.md says by how
much), so these tests check what must hold anyway: the model is quantized where it
should be, answers are fluent English that starts like float32's, the shipped PersRM
loads and steers on the quantized trunk with its adapter quantized too, and zero
steering is plain decoding in this dtype as in any other.
"""

from __future__ import annotations

import pytest

from langchain_pad import PADChatModel
from langchain_pad.quantization import Int8WeightOnlyLinear
from langchain_pad.runtime import PADRuntime

pytestmark = pytest.mark.slow

PROMPT = "Why is the sky blue?"


@pytest.fixture(scope="module")
def runtime():
    runtime = PADRuntime(dtype="int8", batch_window=0.0)
    yield runtime
    runtime.close()


def test_every_linear_layer_is_int8_and_the_tied_head_is_still_readable(runtime):
    model = runtime.loaded.model
    linears = [m for m in model.modules() if isinstance(m, Int8WeightOnlyLinear)]
    assert len(linears) == 30 * 7 + 1  # 30 layers of 7 projections, and the lm_head
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_answers_are_fluent_and_start_like_float32s(runtime):
    fp32 = PADChatModel(max_tokens=48).invoke(PROMPT).content
    int8 = PADChatModel(runtime=runtime, max_tokens=48).invoke(PROMPT).content
    assert isinstance(int8, str) and isinstance(fp32, str)
    assert int8.split()[:5] == fp32.split()[:5], (fp32, int8)
    words = int8.split()
    assert len(words) >= 25 and len(set(words)) >= 0.6 * len(words), int8


def test_the_shipped_persrm_steers_on_the_int8_trunk(runtime):
    llm = PADChatModel(runtime=runtime, max_tokens=40)
    plain = llm.invoke(PROMPT)
    zero = llm.invoke(PROMPT, weights={"expertise": 0.0, "informativeness": 0.0})
    expert = llm.invoke(PROMPT, weights={"expertise": 1.0})
    # exact-zero steering is plain decoding: int8 logits tie exactly now and then, and
    # both paths take the lowest tied id (before, a PAD row took topk's order and left
    # plain decoding after 195 characters on an AMD EPYC)
    assert zero.content == plain.content
    assert not any(zero.response_metadata["pad"]["changed"])
    assert expert.content != plain.content
    assert any(expert.response_metadata["pad"]["changed"])
    assert any(r is not None for r in expert.response_metadata["pad"]["reward"])
    adapter = runtime.reward_model("default").adapter
    assert any(isinstance(m, Int8WeightOnlyLinear) for m in adapter.modules())
