"""``dtype="int4"`` on the real model and the shipped PersRM.

The embedded model's decoder matrices are Q4_1 blocks dequantized, so their int4 codes
come back exactly; the answers still differ from float32's because the kernel takes its
inputs and scales in bfloat16 (benchmarks/results/weight_traffic.md says by how much).
These tests check what must hold anyway: every decoder matrix is packed with no
rounding of its codes, the tied output projection stays the float embedding table,
answers are fluent English that starts like float32's, and the shipped PersRM loads
and steers on the int4 trunk, with zero steering equal to plain decoding.
"""

from __future__ import annotations

import pytest

from langchain_pad import PADChatModel
from langchain_pad.quantization import Int8WeightOnlyLinear
from langchain_pad.quantization_int4 import Int4GroupLinear
from langchain_pad.runtime import PADRuntime

pytestmark = pytest.mark.slow

PROMPT = "Why is the sky blue?"


@pytest.fixture(scope="module")
def runtime():
    runtime = PADRuntime(dtype="int4", batch_window=0.0)
    yield runtime
    runtime.close()


def test_every_decoder_matrix_is_int4_with_its_codes_exact(runtime):
    model = runtime.loaded.model
    linears = [m for m in model.modules() if isinstance(m, Int4GroupLinear)]
    assert len(linears) == 30 * 7  # 30 layers of 7 projections
    assert max(m.max_error for m in linears) == 0.0  # Q4_1 values, recovered exactly
    head = model.get_output_embeddings()
    assert isinstance(head, Int8WeightOnlyLinear)  # the tied projection: int8 per row
    assert head.weight is model.get_input_embeddings().weight


def test_answers_are_fluent_and_start_like_float32s(runtime):
    fp32 = PADChatModel(max_tokens=48).invoke(PROMPT).content
    int4 = PADChatModel(runtime=runtime, max_tokens=48).invoke(PROMPT).content
    assert isinstance(int4, str) and isinstance(fp32, str)
    assert int4.split()[:5] == fp32.split()[:5], (fp32, int4)
    words = int4.split()
    assert len(words) >= 25 and len(set(words)) >= 0.6 * len(words), int4


def test_the_shipped_persrm_steers_on_the_int4_trunk(runtime):
    llm = PADChatModel(runtime=runtime, max_tokens=40)
    plain = llm.invoke(PROMPT)
    zero = llm.invoke(PROMPT, weights={"expertise": 0.0, "informativeness": 0.0})
    expert = llm.invoke(PROMPT, weights={"expertise": 1.0})
    assert zero.content == plain.content
    assert not any(zero.response_metadata["pad"]["changed"])
    assert expert.content != plain.content
    assert any(expert.response_metadata["pad"]["changed"])
    assert any(r is not None for r in expert.response_metadata["pad"]["reward"])


def test_a_new_persrm_cannot_start_from_int4_layers(runtime):
    from langchain_pad.reward_model import PersonalizedRewardModel

    with pytest.raises(ValueError, match="dtype='int8' or 'int4'"):
        PersonalizedRewardModel(runtime.loaded.model, ["expertise"])
