"""How long a later load of the embedded model takes, in fresh processes.

Each run is a new Python process, so nothing is cached in memory; the converted
safetensors directory already exists (the first, one-time conversion is not timed).
We report `load_model()` and, separately, the time spent importing torch and
transformers (including the Llama modules transformers would otherwise import lazily
inside the first load), which every process pays once whatever it loads.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

CHILD = """
import json, time
t0 = time.perf_counter()
import torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
# transformers imports each model family's modules lazily, on first use; import them
# here so the timed load below is the load itself, not Python importing code.
from transformers.models.llama import configuration_llama, modeling_llama
import transformers.tokenization_utils_tokenizers
t1 = time.perf_counter()
from langchain_pad.models import load_model
t2 = time.perf_counter()
load_model()
t3 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t0, "load_model_s": t3 - t2}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    subprocess.run(
        [sys.executable, "-c", "from langchain_pad.models import load_model; load_model()"],
        check=True,
        capture_output=True,
    )  # make sure the conversion exists
    runs = []
    for i in range(args.runs):
        out = subprocess.run(
            [sys.executable, "-c", CHILD], check=True, capture_output=True, text=True
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"run {i + 1}/{args.runs}: {runs[-1]}", flush=True)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {platform.processor() or platform.machine()}",
        "runs": runs,
        "median_imports_s": statistics.median(r["imports_s"] for r in runs),
        "median_load_model_s": statistics.median(r["load_model_s"] for r in runs),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load_time.json").write_text(json.dumps(result, indent=2))
    print(
        f"median load_model(): {result['median_load_model_s']:.2f} s "
        f"(after {result['median_imports_s']:.2f} s of torch/transformers imports)"
    )


if __name__ == "__main__":
    main()
