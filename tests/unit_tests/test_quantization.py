"""Weight-only int8 linears: close to the float layer, and a tied lm_head stays readable."""

from __future__ import annotations

import copy

import pytest
import torch

from langchain_pad.quantization import Int8WeightOnlyLinear, quantize_linears_int8


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().float(), want.detach().float()
    return float((got - want).norm() / want.norm())


@pytest.mark.parametrize("bias", [False, True])
def test_int8_linear_is_close_to_the_float_layer(bias):
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48, bias=bias)
    if bias:
        torch.nn.init.normal_(linear.bias)  # large enough that dropping it would show
    quantized = Int8WeightOnlyLinear(linear)
    x = torch.randn(3, 5, 64)
    out = quantized(x)
    assert out.shape == (3, 5, 48)
    assert out.dtype == torch.float32  # the caller's dtype comes back
    assert _relative_error(out, linear(x)) < 0.02
    assert quantized.quantized.dtype == torch.int8
    assert int(quantized.quantized.abs().max()) == 127  # each row uses its full range
    assert not hasattr(quantized, "weight")  # no float copy kept


def test_a_zero_row_quantizes_to_zero_not_nan():
    linear = torch.nn.Linear(16, 4, bias=False)
    with torch.no_grad():
        linear.weight[1] = 0.0
    out = Int8WeightOnlyLinear(linear)(torch.randn(2, 16))
    assert torch.isfinite(out).all()
    assert torch.equal(out[:, 1], torch.zeros(2))


def test_a_model_keeps_its_tied_output_weight(tiny_model):
    model = copy.deepcopy(tiny_model).to(torch.bfloat16)
    embedding = model.get_input_embeddings().weight
    model.lm_head.weight = embedding  # tied, as SmolLM2's are
    x = torch.tensor([[1, 2, 3, 4]])
    want = model(input_ids=x).logits

    replaced = quantize_linears_int8(model)

    assert replaced == 2 * 7 + 1  # q, k, v, o, gate, up, down per layer, and lm_head
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert model.get_output_embeddings().weight is embedding  # what a PersRM reads
    got = model(input_ids=x).logits
    assert got.dtype == torch.bfloat16
    assert _relative_error(got, want) < 0.05


def test_an_untied_output_projection_stays_float(tiny_model):
    model = copy.deepcopy(tiny_model).to(torch.bfloat16)
    untied = torch.nn.Linear(32, 258, bias=False).to(torch.bfloat16)
    model.lm_head = untied

    quantize_linears_int8(model)

    assert model.lm_head is untied
    assert sum(isinstance(m, Int8WeightOnlyLinear) for m in model.modules()) == 2 * 7


def test_an_input_width_the_kernel_cannot_take_is_refused_or_left_float():
    with pytest.raises(ValueError, match="divisible by 16, got 20"):
        Int8WeightOnlyLinear(torch.nn.Linear(20, 8))
    model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.Linear(32, 8))
    assert quantize_linears_int8(model) == 1
    assert isinstance(model[0], torch.nn.Linear)
    assert isinstance(model[1], Int8WeightOnlyLinear)
