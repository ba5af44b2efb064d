"""Weight-only int4 linear layers in 32-weight groups: the ``dtype="int4"`` option.

Why this layout: the embedded model ships as a Q4_1 GGUF, whose every decoder matrix is
stored in blocks of 32 weights ``w = d * q + m`` (``q`` in 0..15, both ends used). Our
float32 weights are those values dequantized, so int4 codes in groups of 32 with the
block's minimum and range recover them exactly: the same numbers llama.cpp reads, at a
sixth of float32's bytes (66 MB against 425 MB for the 210 decoder matrices). On other
models the same rounding is ordinary asymmetric group-wise int4 (lossy).

The product runs in torch's own kernel (``aten._weight_int4pack_mm_for_cpu``, the one
torchao's CPU int4 layout uses). It takes bfloat16 activations and scales: its float32
path ran many times slower (benchmarks/results/weight_traffic.md). So the codes are
exact, but each group's scale and offset are rounded to bfloat16 and so is the layer's
input; everything between the linear layers (norms, attention) stays float32, and
the tied output projection is int8 (see :func:`quantize_linears_int4`). Answers differ
from float32's as bfloat16's do.
"""

from __future__ import annotations

import torch

__all__ = ["GROUP_SIZE", "OUTPUT_MULTIPLE", "Int4GroupLinear", "quantize_linears_int4"]

GROUP_SIZE = 32
"""Weights sharing one scale and offset: Q4_1's block."""

OUTPUT_MULTIPLE = 16
"""The kernel packs output rows in tiles of 16 and refuses other counts (torch 2.13)."""

LEVELS = 15
"""The largest int4 code: codes run 0..15."""


def fits(linear: torch.nn.Linear) -> bool:
    """Whether the kernel can take this layer's shape (no bias: the decoders' have none)."""
    return (
        linear.in_features % GROUP_SIZE == 0
        and linear.out_features % OUTPUT_MULTIPLE == 0
        and linear.bias is None
    )


class Int4GroupLinear(torch.nn.Module):
    """``y = x @ W.T`` with ``W`` held as int4 codes, per 32-weight group ``scale, zero``.

    The kernel dequantizes ``(q - 8) * scale + zero``, so ``zero = minimum + 8 * scale``.
    ``max_error`` is the largest distance between a float weight and its code (0.0 on a
    Q4_1 matrix); the bfloat16 rounding of the scales comes on top of it.
    """

    def __init__(self, linear: torch.nn.Linear) -> None:
        if not fits(linear):
            raise ValueError(
                f"Int4GroupLinear needs in_features divisible by {GROUP_SIZE}, out_features "
                f"divisible by {OUTPUT_MULTIPLE} and no bias; got {linear.in_features} -> "
                f"{linear.out_features}, bias={linear.bias is not None}. Keep this layer float."
            )
        super().__init__()
        weight = linear.weight.detach().float()
        rows, cols = weight.shape
        groups = weight.view(rows, cols // GROUP_SIZE, GROUP_SIZE)
        low = groups.amin(-1)
        scale = (groups.amax(-1) - low) / LEVELS
        divisor = torch.where(scale == 0, torch.ones_like(scale), scale)
        codes = torch.round((groups - low[..., None]) / divisor[..., None]).clamp(0, LEVELS)
        self.max_error = float((codes * scale[..., None] + low[..., None] - groups).abs().max())
        self.in_features = int(cols)
        self.out_features = int(rows)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
            codes.to(torch.int32).view(rows, cols).contiguous(), 1
        )
        self.register_buffer("packed", packed)
        scale_and_zero = torch.stack([scale, low + 8 * scale], dim=-1).transpose(0, 1)
        self.register_buffer("scale_and_zero", scale_and_zero.contiguous().to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        out: torch.Tensor = torch.ops.aten._weight_int4pack_mm_for_cpu(
            flat, self.packed, GROUP_SIZE, self.scale_and_zero
        )
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"int4 weights in groups of {GROUP_SIZE}"
        )


def quantize_linears_int4(model: torch.nn.Module, *, output_int8: bool = True) -> int:
    """Replace the decoder's linear layers in place; returns how many (int4 ones).

    A tied output projection (the input embedding table: Q8_0 in the GGUF, not a 4-bit
    grid) becomes int8 with one scale per row (:class:`~langchain_pad.quantization.
    Int8WeightOnlyLinear`), its float weight kept for the PersRM, which reads it whole.
    Why: once the decoder is int4, the 113 MB float32 projection was the largest read of
    a token (48% of a step's time); int8 reads 28 MB, as llama.cpp reads Q8_0. Not exact
    (Q8_0 has a scale per 32 weights; the kernel takes one per row): the measured effect
    on answers is in ``benchmarks/results/amd_epyc_avx512/dtype.md``.
    ``output_int8=False`` keeps it float32. An untied projection stays float; layers the
    kernel cannot take (:func:`fits`) stay float too.
    """
    from langchain_pad.quantization import (
        INPUT_MULTIPLE,
        Int8WeightOnlyLinear,
        output_projection,
    )

    output, tied = output_projection(model)
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear):
                continue
            if child is output:
                if output_int8 and tied and child.in_features % INPUT_MULTIPLE == 0:
                    setattr(parent, name, Int8WeightOnlyLinear(child, keep_weight=True))
            elif fits(child):
                setattr(parent, name, Int4GroupLinear(child))
                replaced += 1
    return replaced
