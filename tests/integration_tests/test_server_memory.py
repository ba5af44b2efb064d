"""Issue 17: a server under 8 concurrent ~8,000-word personalized prompts stays under a
stated memory ceiling, and every request is answered or refused with a clear status.

Runs ``benchmarks/server_memory.py``'s measurement on a real server process (RSS of
the process and its children, sampled every 0.1 s). The committed figure is in
``benchmarks/results/server_memory.json``; the ceiling leaves a margin over it for a
shared, noisy machine. About 4 GB and 2-3 minutes of both cores here.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).parents[2] / "benchmarks" / "server_memory.py"
COMMITTED = BENCH.parent / "results" / "server_memory.json"
MARGIN = 1.75
"""Over the committed peak (3.67 GB, a run that answered 2 of 8 and refused 6 at the
queue timeout). A faster machine answers more of them, one after another within the
token budget, and holds more caches: 5.72 GB with all 8 answered in a clean-clone run.
1.75x (6.4 GB) covers that and still fails at the 6.86 GB the server used before the
queue timeout and prefill budget."""
"""The ceiling: the committed peak times this (issue 17's unbounded server: 10.8 GB)."""


def test_long_concurrent_prompts_stay_under_the_memory_ceiling(tmp_path):
    spec = importlib.util.spec_from_file_location("server_memory", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ceiling = json.loads(COMMITTED.read_text())["peak_rss_gb"] * MARGIN
    result = bench.measure(tmp_path / "server.log")
    assert result["alive"], "the server died under the load"
    assert len(result["statuses"]) == bench.CONCURRENT
    # Answered (200), or refused at the queue timeout (503) while earlier prompts still
    # prefill: never left to run into the request timeout (504), as all 8 did before the
    # queue timeout (one wave of 4 admitted by the token budget, then nothing in 600 s).
    assert 200 in result["statuses"], result
    assert set(result["statuses"]) <= {200, 503}, result
    for error in result["errors"]:
        assert '"message"' in error and "queue_timeout=" in error and "retry later" in error, error
    assert result["peak_rss_gb"] < ceiling, result
