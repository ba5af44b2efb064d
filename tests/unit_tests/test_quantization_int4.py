"""Int4 linears in groups of 32: exact codes on a Q4_1 grid, close elsewhere, clear refusals."""

from __future__ import annotations

import copy

import pytest
import torch

from langchain_pad.models import DTYPES, resolve_dtype
from langchain_pad.quantization import Int8WeightOnlyLinear
from langchain_pad.quantization_int4 import GROUP_SIZE, Int4GroupLinear, quantize_linears_int4


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().float(), want.detach().float()
    return float((got - want).norm() / want.norm())


def _q4_1_linear(rows: int, cols: int) -> torch.nn.Linear:
    """A layer whose weights are Q4_1 values: per 32-block ``d * q + m``, q using 0..15."""
    torch.manual_seed(0)
    groups = cols // GROUP_SIZE
    codes = torch.randint(0, 16, (rows, groups, GROUP_SIZE))
    codes[..., 0], codes[..., 1] = 0, 15  # both ends used, as the GGUF quantizer leaves them
    step = (torch.rand(rows, groups, 1) * 0.02 + 0.001).half().float()
    low = (-torch.rand(rows, groups, 1) * 0.1).half().float()
    linear = torch.nn.Linear(cols, rows, bias=False)
    with torch.no_grad():
        linear.weight.copy_((codes * step + low).view(rows, cols))
    return linear


def test_q4_1_weights_are_recovered_exactly_and_the_output_is_close():
    linear = _q4_1_linear(48, 96)
    int4 = Int4GroupLinear(linear)
    assert int4.max_error == 0.0
    x = torch.randn(3, 5, 96)
    out = int4(x)
    assert out.shape == (3, 5, 48)
    assert out.dtype == torch.float32  # the caller's dtype comes back
    # what is left is the bfloat16 rounding of the input and of the scales
    assert _relative_error(out, linear(x)) < 0.01
    assert not hasattr(int4, "weight")  # no float copy kept


def test_other_weights_are_rounded_to_the_group_grid():
    torch.manual_seed(1)
    linear = torch.nn.Linear(64, 32, bias=False)
    int4 = Int4GroupLinear(linear)
    spread = float(linear.weight.detach().abs().max())
    assert 0.0 < int4.max_error <= spread / 15  # at most half a step of the widest group
    x = torch.randn(4, 64)
    assert _relative_error(int4(x), linear(x)) < 0.15


def test_shapes_the_kernel_cannot_take_are_refused_with_what_to_do():
    for linear, said in [
        (torch.nn.Linear(40, 16, bias=False), "in_features divisible by 32"),
        (torch.nn.Linear(64, 20, bias=False), "got 64 -> 20"),
        (torch.nn.Linear(64, 16, bias=True), "bias=True"),
    ]:
        with pytest.raises(ValueError, match=said):
            Int4GroupLinear(linear)


def test_an_untied_output_projection_stays_float(tiny_model):
    model = copy.deepcopy(tiny_model)
    assert model.lm_head.weight is not model.get_input_embeddings().weight
    x = torch.tensor([[1, 2, 3, 4]])
    want = model(input_ids=x).logits

    replaced = quantize_linears_int4(model)

    assert replaced == 2 * 7  # q, k, v, o, gate, up, down per layer
    assert isinstance(model.lm_head, torch.nn.Linear)
    got = model(input_ids=x).logits
    assert got.dtype == torch.float32
    assert _relative_error(got, want) < 0.2


def _tied_copy(model: torch.nn.Module) -> torch.nn.Module:
    tied = copy.deepcopy(model)
    tied.lm_head.weight = tied.get_input_embeddings().weight
    return tied


def test_a_tied_output_projection_becomes_int8_and_keeps_its_float_weight(tiny_model):
    model = _tied_copy(tiny_model)
    embeddings = model.get_input_embeddings().weight
    x = torch.tensor([[1, 2, 3, 4]])
    want = model(input_ids=x).logits

    replaced = quantize_linears_int4(model)

    assert replaced == 2 * 7  # the head is not an int4 layer
    head = model.get_output_embeddings()
    assert isinstance(head, Int8WeightOnlyLinear)
    assert head.weight is embeddings  # what a PersRM reads whole
    got = model(input_ids=x).logits
    assert got.dtype == torch.float32
    assert _relative_error(got, want) < 0.2


def test_output_int8_false_keeps_a_tied_projection_float(tiny_model):
    model = _tied_copy(tiny_model)
    quantize_linears_int4(model, output_int8=False)
    assert type(model.get_output_embeddings()) is torch.nn.Linear


def test_int4_is_a_dtype_name():
    assert "int4" in DTYPES
    assert resolve_dtype("int4") == "int4"
