"""Load test of the OpenAI-compatible server: 16 users at once vs one at a time.

One run, one server process (``langchain-pad serve`` on a free loopback port):

1. warm-up: one short request (untimed);
2. ``sequential``: the N requests, each streamed alone, one after another;
3. ``concurrent``: the same N requests streamed by N clients at once
   (``openai.AsyncOpenAI``, one connection each).

Each request has its own question and its own ``w_p`` (N different users), is greedy
(``temperature=0``) and streams up to ``--max-tokens`` tokens. Checks (reported, and
the exit code is 1 if one fails): every concurrent client completes, and gets exactly
the text its request got alone (no mixed-up streams, batching does not change greedy
answers); the server's wave statistics show the concurrent requests shared forward
passes. Throughput = completion tokens of all requests / wall time of the phase; the
speed-up is concurrent / sequential throughput.

The reward model is an untrained PersRM with deterministically perturbed heads (as in
the tests) unless ``--reward-model DIR`` names a trained one: speed does not depend on
the trained values. Run ``python benchmarks/server_load.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import openai
from speed import machine_info  # benchmarks/ is on sys.path when run as a script

QUESTIONS = [
    "What is gravity?",
    "Describe a cat.",
    "How do plants grow?",
    "What is music?",
    "Why is the sea salty?",
    "How does a bicycle stay upright?",
    "What is a volcano?",
    "Explain how bread rises.",
]


def users(n: int) -> list[list[float]]:
    """N distinct preferences over the three axes, spread over the strength box [-1, 1]."""
    grid = [-1.0, -0.5, 0.5, 1.0]
    out = []
    for i in range(n):
        out.append([grid[i % 4], grid[(i // 4) % 4], grid[(i * 3 + 1) % 4] * 0.5])
    return out


def make_reward_model(directory: Path) -> tuple[str, Any]:
    import torch

    from langchain_pad.models import load_model
    from langchain_pad.reward_model import PersonalizedRewardModel

    loaded = load_model()
    rm = PersonalizedRewardModel(
        loaded.model, ["expertise", "informativeness", "style"], beta=1.0, adapted_layers=4
    )
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        rm.heads.add_(0.02 * torch.randn(rm.heads.shape, generator=generator))
    from langchain_pad.calibration import PoleCalibration, write_calibration

    path = rm.save(directory)
    # an untrained PersRM has no measured poles: strength 1 is raw 2 on every axis
    write_calibration(path, PoleCalibration.uniform(rm.axes, 2.0))
    return str(path), loaded


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def stream_one(
    client: openai.AsyncOpenAI, model: str, question: str, w_p: list[float], max_tokens: int
) -> dict[str, Any]:
    started = time.perf_counter()
    first: float | None = None
    pieces: list[str] = []
    tokens = 0
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": question}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"pad": {"weights": w_p}},
    )
    async for chunk in stream:
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            if first is None:
                first = time.perf_counter()
            pieces.append(chunk.choices[0].delta.content)
    end = time.perf_counter()
    return {
        "text": "".join(pieces),
        "tokens": tokens,
        "seconds": end - started,
        "ttft": (first or end) - started,
    }


async def run_phase(
    base_url: str,
    model: str,
    requests: list[tuple[str, list[float]]],
    max_tokens: int,
    *,
    together: bool,
) -> tuple[list[dict[str, Any]], float]:
    client = openai.AsyncOpenAI(
        base_url=base_url,
        api_key="unused",
        max_retries=0,
        timeout=3600,
        http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=64), timeout=3600),
    )
    started = time.perf_counter()
    if together:
        results = list(
            await asyncio.gather(
                *(stream_one(client, model, q, w, max_tokens) for q, w in requests)
            )
        )
    else:
        results = [await stream_one(client, model, q, w, max_tokens) for q, w in requests]
    wall = time.perf_counter() - started
    await client.close()
    return results, wall


def summary(results: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    tokens = sum(r["tokens"] for r in results)
    ttfts = sorted(r["ttft"] for r in results)
    return {
        "wall_seconds": round(wall, 2),
        "completion_tokens": tokens,
        "tokens_per_second": round(tokens / wall, 2),
        "ttft_median_seconds": round(ttfts[len(ttfts) // 2], 2),
        "ttft_max_seconds": round(ttfts[-1], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--reward-model", default=None, help="PersRM directory (default: perturbed)"
    )
    parser.add_argument("--batch-window", type=float, default=0.05)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pad-server-load-"))
    if args.reward_model is None:
        reward_model, loaded = make_reward_model(tmp / "persrm")
        reward_model_kind = "untrained PersRM, heads + 0.02 * randn (seed 0)"
    else:
        from langchain_pad.models import load_model

        reward_model, loaded = args.reward_model, load_model()
        reward_model_kind = args.reward_model
    info = machine_info(loaded)
    del loaded

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp / "server.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "langchain_pad.cli", "serve", "--port", str(port),
            "--reward-model", reward_model, "--batch-window", str(args.batch_window),
            "--max-batch-size", str(max(32, args.clients)), "--log-level", "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print((tmp / "server.log").read_text(), file=sys.stderr)
                return 2
            time.sleep(0.3)
        model = httpx.get(f"{base}/v1/models").json()["data"][0]["id"]
        ws = users(args.clients)
        requests = [(QUESTIONS[i % len(QUESTIONS)], ws[i]) for i in range(args.clients)]

        asyncio.run(run_phase(f"{base}/v1", model, requests[:1], 4, together=False))  # warm-up
        print(f"sequential: {args.clients} requests one at a time ...", flush=True)
        alone, alone_wall = asyncio.run(
            run_phase(f"{base}/v1", model, requests, args.max_tokens, together=False)
        )
        waves_before = httpx.get(f"{base}/v1/pad/stats").json()["totals"]["waves"]
        print(f"concurrent: {args.clients} clients at once ...", flush=True)
        together, together_wall = asyncio.run(
            run_phase(f"{base}/v1", model, requests, args.max_tokens, together=True)
        )
        stats = httpx.get(f"{base}/v1/pad/stats").json()
    finally:
        server.terminate()
        server.wait(30)
        log.close()

    new_waves = stats["totals"]["waves"] - waves_before  # the stats keep a window of waves
    concurrent_waves = stats["wave_sizes"][-new_waves:] if new_waves else []
    same = [a["text"] == t["text"] for a, t in zip(alone, together, strict=True)]
    seq = summary(alone, alone_wall)
    conc = summary(together, together_wall)
    speedup = conc["tokens_per_second"] / seq["tokens_per_second"]
    result = {
        "benchmark": "server_load",
        "machine": info,
        "settings": {
            "clients": args.clients,
            "max_tokens": args.max_tokens,
            "temperature": 0,
            "batch_window_seconds": args.batch_window,
            "reward_model": reward_model_kind,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "weights": ws,
            "questions": [q for q, _ in requests],
        },
        "sequential": seq,
        "concurrent": conc,
        "speedup": round(speedup, 2),
        "concurrent_waves": concurrent_waves,
        "all_completed": all(t["tokens"] > 0 for t in together) and len(together) == args.clients,
        "texts_equal_alone": sum(same),
        "distinct_answers": len({a["text"] for a in alone}),
    }
    ok = result["all_completed"] and all(same) and speedup >= 3.0
    result["passed"] = ok

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "server_load.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# Server load test (`benchmarks/server_load.py`)",
        "",
        f"Machine: {info['cpu_model']}, {info['cpus_usable']} usable CPUs, torch "
        f"{info['torch']} ({info['torch_threads']} threads), load average at start "
        f"{info['load_average_start']}; {info['date']}, commit {info['git_commit']}.",
        f"Settings: {args.clients} streaming clients, {args.clients} different `w_p`, greedy, "
        f"up to {args.max_tokens} tokens each, batch window {args.batch_window} s, "
        f"reward model: {reward_model_kind}.",
        "",
        "| phase | wall s | tokens | tokens/s | median TTFT s | max TTFT s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in (("one at a time", seq), (f"{args.clients} at once", conc)):
        md.append(
            f"| {name} | {s['wall_seconds']} | {s['completion_tokens']} | "
            f"{s['tokens_per_second']} | {s['ttft_median_seconds']} | {s['ttft_max_seconds']} |"
        )
    md += [
        "",
        f"Speed-up (aggregate tokens/s): **{speedup:.2f}x**. Waves of the concurrent phase: "
        f"{concurrent_waves}. Texts equal to each request decoded alone: "
        f"{sum(same)}/{args.clients}; distinct answers: {result['distinct_answers']}. "
        f"All clients completed: {result['all_completed']}.",
        "",
    ]
    (out / "server_load.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
