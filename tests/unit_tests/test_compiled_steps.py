"""Which forward passes ``CompiledSteps`` sends through ``torch.compile``, and what it does
when compiling fails. ``torch.compile`` is replaced by stand-ins: the real compiler is
exercised in tests/integration_tests/test_compiled_steps_real.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch

from langchain_pad.engine.compiled import CompiledSteps


class _Model:
    def __init__(self) -> None:
        self.eager_widths: list[int] = []

    def forward(self, **inputs: Any) -> str:
        return "eager"

    def __call__(self, **inputs: Any) -> str:
        self.eager_widths.append(int(inputs["input_ids"].shape[1]))
        return self.forward(**inputs)


def _ids(width: int) -> torch.Tensor:
    return torch.zeros(1, width, dtype=torch.long)


def test_one_token_steps_are_compiled_wider_feeds_are_eager(monkeypatch):
    compiled_with: dict[str, Any] = {}

    def fake_compile(fn: Any, **options: Any) -> Any:
        compiled_with.update(options)
        return lambda **inputs: "compiled"

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = _Model()
    steps = CompiledSteps(model)  # type: ignore[arg-type]
    assert steps.forward(input_ids=_ids(7)) == "eager"  # a prefill
    assert steps.forward(input_ids=_ids(1)) == "compiled"
    assert steps.forward(input_ids=_ids(3)) == "eager"  # forced tokens fed at once
    assert steps.forward(input_ids=_ids(1)) == "compiled"
    assert model.eager_widths == [7, 3]
    assert steps.compiled_calls == 2 and steps.active
    assert compiled_with == {"dynamic": True, "fullgraph": True}


def test_a_failed_compilation_warns_once_and_decoding_goes_on_eagerly(monkeypatch, caplog):
    attempts: list[int] = []

    def failing(**inputs: Any) -> str:
        attempts.append(1)
        raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")

    monkeypatch.setattr(torch, "compile", lambda fn, **options: failing)
    model = _Model()
    steps = CompiledSteps(model)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="langchain_pad.engine.compiled"):
        assert steps.forward(input_ids=_ids(1)) == "eager"  # the same step, run eagerly
        assert steps.forward(input_ids=_ids(1)) == "eager"
    assert len(attempts) == 1  # not retried every step
    assert not steps.active and "C++ compiler" in str(steps.error)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "compile_steps=False" in warnings[0], warnings
    assert model.eager_widths == [1, 1]


def test_the_runtime_checks_compile_steps():
    from langchain_pad.runtime import PADRuntime

    with pytest.raises(ValueError, match="compile_steps must be True or False"):
        PADRuntime(compile_steps="yes")  # type: ignore[arg-type]
    assert PADRuntime().compile_steps is False
