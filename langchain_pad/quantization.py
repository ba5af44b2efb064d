"""Weight-only int8 linear layers: the ``dtype="int8"`` option.

A 135M-parameter model decoding one token on a CPU reads all its weights, so its speed
is mostly memory traffic: float32 moves about 540 MB per token, int8 a quarter of that.
Each linear layer's weight is stored as int8 with one float scale per output channel
(symmetric, round to nearest); activations stay bfloat16 and the product runs in torch's
own ``_weight_int8pack_mm`` kernel, the one torchao's CPU path and gpt-fast use.

Why by hand: torchao's ``Int8WeightOnlyConfig`` is the library for this, but without
``torch.compile`` its CPU path dequantizes per call and ran at 10 tok/s against float32's
19 on a 2-core Xeon (AMX, AVX-512 BF16), while these layers ran at 25. What is ours is
only the rounding and the module; the kernel is torch's.

The cost is in the answers: greedy int8 answers follow float32's for a sentence or two
and then take another wording (benchmarks/results/dtype.md gives the agreement and the
perplexity ratio), which is why float32 stays the default.
"""

from __future__ import annotations

import torch

__all__ = ["INPUT_MULTIPLE", "Int8WeightOnlyLinear", "output_projection", "quantize_linears_int8"]

INPUT_MULTIPLE = 16
"""The kernel reads inputs in blocks of 16: other widths crash it or give wrong sums
(probed on torch 2.13), so such layers are refused here and left float by the model pass."""


class Int8WeightOnlyLinear(torch.nn.Module):
    """``y = x @ (q * scale).T + bias`` with ``q`` int8 ``[out, in]``, ``scale`` per row.

    ``weight`` is kept only when it is shared with another module (a tied ``lm_head``
    shares the input embeddings): then it costs no memory, and whoever reads
    ``get_output_embeddings().weight`` (the PersRM does) still sees the original values.
    """

    def __init__(self, linear: torch.nn.Linear, *, keep_weight: bool = False) -> None:
        if linear.in_features % INPUT_MULTIPLE:
            raise ValueError(
                f"Int8WeightOnlyLinear needs in_features divisible by {INPUT_MULTIPLE}, got "
                f"{linear.in_features}; keep this layer in float."
            )
        super().__init__()
        source = linear.weight.detach()
        weight = source.float()
        scale = (weight.abs().amax(dim=1) / 127.0).clamp(min=torch.finfo(torch.float32).tiny)
        quantized = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.in_features = int(linear.in_features)
        self.out_features = int(linear.out_features)
        self.register_buffer("quantized", quantized.contiguous())
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.bias: torch.Tensor | None = (
            None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)
        )
        if keep_weight:
            self.weight = linear.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if flat.dtype != torch.bfloat16:
            flat = flat.to(torch.bfloat16)
        out: torch.Tensor = torch.ops.aten._weight_int8pack_mm(flat, self.quantized, self.scale)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


def _embeddings(model: torch.nn.Module, getter: str) -> torch.nn.Module | None:
    """A transformers model's embedding module; None on a plain module (an adapter)."""
    get = getattr(model, getter, None)
    module = get() if callable(get) else None
    return module if isinstance(module, torch.nn.Module) else None


def output_projection(model: torch.nn.Module) -> tuple[torch.nn.Module | None, bool]:
    """A model's output projection, and whether it shares its weight with the input
    embeddings (then quantizing it must keep that weight reachable for the PersRM)."""
    output = _embeddings(model, "get_output_embeddings")
    inputs = _embeddings(model, "get_input_embeddings")
    tied = (
        isinstance(output, torch.nn.Linear)
        and inputs is not None
        and output.weight is getattr(inputs, "weight", None)
    )
    return output, tied


def quantize_linears_int8(model: torch.nn.Module) -> int:
    """Replace every ``nn.Linear`` of a bfloat16 model in place; returns how many.

    The output projection is replaced only when it shares its weight with the input
    embeddings (then that weight stays reachable at no cost); an untied one keeps its
    bfloat16 weights, which a PersRM reads whole. Layers whose input width the kernel
    cannot take (see :data:`INPUT_MULTIPLE`) stay float too.
    """
    output, tied = output_projection(model)
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear):
                continue
            if (child is output and not tied) or child.in_features % INPUT_MULTIPLE:
                continue
            setattr(parent, name, Int8WeightOnlyLinear(child, keep_weight=child is output))
            replaced += 1
    return replaced
