"""``langchain-pad calibrate`` refuses bad options before loading anything."""

from __future__ import annotations

import pytest

from langchain_pad import cli


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--prompts", "0"], "--prompts must be a positive integer"),
        (["--new-tokens", "-3"], "--new-tokens must be a positive integer"),
        (["--magnitudes", "2", "inf"], "--magnitudes must be finite numbers > 0"),
        (["--magnitudes", "0"], "--magnitudes must be finite numbers > 0"),
        (["--max-perplexity-ratio", "0"], "--max-perplexity-ratio must be a finite number > 0"),
        (
            ["--max-worst-perplexity-ratio", "-1"],
            "--max-worst-perplexity-ratio must be a finite number > 0",
        ),
        (["--max-worst-perplexity-ratio", "nan"], "--max-worst-perplexity-ratio must be"),
    ],
)
def test_bad_options_exit_2_with_the_reason(tmp_path, capsys, argv, message):
    code = cli.main(["calibrate", "--data", str(tmp_path), "--reward-model", str(tmp_path), *argv])
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_directory_without_metrics_is_refused(tmp_path, capsys):
    code = cli.main(["calibrate", "--data", str(tmp_path), "--reward-model", str(tmp_path)])
    assert code == 2
    assert "needs a PersRM written by `langchain-pad train`" in capsys.readouterr().err


@pytest.mark.parametrize("field", ["max_perplexity_ratio", "max_worst_perplexity_ratio"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf"), True])
def test_train_settings_refuse_a_ratio_bar_that_rejects_everything(field, value):
    from langchain_pad.training.pipeline import TrainSettings

    with pytest.raises(ValueError, match=field):
        TrainSettings(**{field: value})
