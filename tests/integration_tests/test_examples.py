"""Every example runs as a user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_quickstart_runs_and_prints_answers():
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), "12"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert any(line.startswith("[rainbows] ") for line in lines)
    assert any(line.startswith("[volcanoes] ") for line in lines)
    assert len(lines[0]) > 10  # the streamed answer
