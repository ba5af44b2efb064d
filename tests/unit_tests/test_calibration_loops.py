"""Anchor calibration counts no win for a looping answer, as the benchmarks do."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from langchain_pad.axes import axes_by_name
from langchain_pad.engine import GenerationOutput
from langchain_pad.evaluation import DecodeRow
from langchain_pad.training.calibration import calibrate_anchors
from langchain_pad.training.pipeline import AxisReport, TrainSettings

PLAIN = "The sun is hot. It gives us light."
FLUENT_EXPERT = (
    "Stellar nucleosynthesis converts hydrogen into helium through thermonuclear fusion, "
    "releasing electromagnetic radiation."
)
LOOPING_EXPERT = (
    "Thermonuclear fusion releases electromagnetic radiation. " * 4
    + "Thermonuclear fusion releases electromagnetic radiation."
)


def _fake_decode(texts_by_weight: dict[float, str]) -> Any:
    def decode(_loaded: Any, rows: list[DecodeRow], **_: Any) -> list[GenerationOutput]:
        outputs = []
        for row in rows:
            text = PLAIN if row.weights is None else texts_by_weight[abs(row.weights[0])]
            outputs.append(GenerationOutput([1, 2, 3], text, [None] * 3, "length", 4))
        return outputs

    return decode


def test_a_looping_answer_is_no_win_and_the_fluent_weight_is_picked(monkeypatch):
    # the larger weight moves the reading grade further, but only by looping
    texts = {2.0: FLUENT_EXPERT, 6.0: LOOPING_EXPERT}
    monkeypatch.setattr("langchain_pad.evaluation.decode_conditions", _fake_decode(texts))
    monkeypatch.setattr(
        "langchain_pad.evaluation.perplexities", lambda _l, prompts, _a: [5.0] * len(prompts)
    )
    axes = axes_by_name(["expertise"])
    report = AxisReport("expertise", "elementary", "expert", 1, 1, 1.0, 1.0, True, "")
    result = calibrate_anchors(
        SimpleNamespace(),  # type: ignore[arg-type]
        SimpleNamespace(axes=["expertise"]),  # type: ignore[arg-type]
        axes,
        [report],
        ["Why is the sun hot?", "What is a star?"],
        TrainSettings(calibration_magnitudes=(2.0, 6.0)),
        show_progress=False,
    )
    trials = {(t["sign"], t["magnitude"]): t for t in report.calibration}
    assert trials[(1, 2.0)]["win_rate"] == 1.0 and trials[(1, 2.0)]["looping"] == 0
    assert trials[(1, 6.0)]["win_rate"] == 0.0 and trials[(1, 6.0)]["looping"] == 2
    assert result["calibration"]["axes"]["expertise"]["high"] == pytest.approx(2.0)
