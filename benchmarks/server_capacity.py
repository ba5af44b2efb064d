"""Capacity of the replicated server: the same closed-loop load on 1 and 2 Ray replicas.

One run. A throwaway PostgreSQL (the tests' helper) holds 16 user profiles; for each
configuration ``REPLICAS x THREADS`` (default ``1x1, 1x2, 2x1``), ``langchain-pad serve
--replicas R --replica-threads T`` starts a local Ray and its replicas, then for
``--duration`` seconds:

- ``--clients`` completion clients loop: greedy, ``--max-tokens`` tokens, each request
  for one of the 16 users (their stored ``w_p``), non-streaming, one connection each;
- ``--writers`` feedback clients loop ``POST /v1/pad/feedback`` (a PersRM forward over
  the pair, a stage-2 refit, one PostgreSQL transaction).

Clients start no request after the window; every request is counted and the clock
stops when the last one ends. Reported per configuration: completed requests, aggregate
completion tokens/s (all their tokens / that time), p50/p95 request latency, feedback
writes/s, the replicas' resident memory. Separately, the raw PostgreSQL bound: profile
writes/s (``store.put``, one transaction each) from 4 threads straight to the store,
without the model. Results go to ``benchmarks/results/server_capacity.{json,md}``;
``benchmarks/capacity.md`` reads them. ``python benchmarks/server_capacity.py --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from server_load import free_port, make_reward_model  # benchmarks/ is on sys.path
from speed import machine_info

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' throwaway PostgreSQL

from tests.integration_tests._postgres import throwaway_postgres  # noqa: E402

QUESTIONS = [
    "What is gravity?",
    "Describe a cat.",
    "How do plants grow?",
    "What is music?",
    "Why is the sea salty?",
    "What is a volcano?",
]
FEEDBACK = {
    "prompt": "What is gravity?",
    "chosen": "Gravity is the curvature of spacetime produced by mass and energy.",
    "rejected": "Gravity is what makes things fall down. It is cool!",
}


def user_weights(i: int) -> dict[str, float]:
    grid = [-1.0, -0.5, 0.5, 1.0]  # strengths (the benchmark PersRM: 1 is raw 2)
    return {"expertise": grid[i % 4], "informativeness": grid[(i // 4) % 4], "style": 0.25}


def replica_rss_mb() -> float:
    """Resident memory of this machine's Serve replica processes, in MB."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if b"ServeReplica" not in cmdline:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def start_service(args: list[str], log: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    command = [sys.executable, "-m", "langchain_pad.cli", "serve", "--port", str(port), *args]
    started = time.monotonic()
    out = log.open("wb")
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    while not re.search(r"Ray address: (\S+)", log.read_text()):
        if process.poll() is not None or time.monotonic() - started > 400:
            raise RuntimeError(f"the service did not start:\n{log.read_text()}")
        time.sleep(0.5)
    return process, f"http://127.0.0.1:{port}", time.monotonic() - started


def stop_service(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(90)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


async def load(base: str, clients: int, writers: int, max_tokens: int, duration: float):
    latencies: list[float] = []
    tokens = 0
    errors: list[str] = []
    writes = 0
    replicas: set[str] = set()

    async def completer(client: httpx.AsyncClient, i: int, end: float) -> None:
        nonlocal tokens
        n = 0
        while time.monotonic() < end:
            body = {
                "messages": [{"role": "user", "content": QUESTIONS[(i + n) % len(QUESTIONS)]}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "user": f"user{(i + n) % 16:02d}",
            }
            start = time.monotonic()
            response = await client.post(f"{base}/v1/chat/completions", json=body)
            done = time.monotonic()
            n += 1
            if response.status_code != 200:
                errors.append(f"{response.status_code}: {response.text[:120]}")
                continue
            replicas.add(response.headers.get("x-pad-replica", "?"))
            latencies.append(done - start)
            tokens += response.json()["usage"]["completion_tokens"]

    async def writer(client: httpx.AsyncClient, i: int, end: float) -> None:
        nonlocal writes
        n = 0
        while time.monotonic() < end:
            pair = {**FEEDBACK, "chosen": f"{FEEDBACK['chosen']} ({n})", "user": f"writer{i}"}
            response = await client.post(f"{base}/v1/pad/feedback", json=pair)
            n += 1
            if response.status_code == 200:
                writes += 1
            elif response.status_code != 200:
                errors.append(f"feedback {response.status_code}: {response.text[:120]}")

    limits = httpx.Limits(max_connections=clients + writers + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        start = time.monotonic()
        end = start + duration
        await asyncio.gather(
            *(completer(client, i, end) for i in range(clients)),
            *(writer(client, i, end) for i in range(writers)),
        )
        elapsed = time.monotonic() - start  # new requests stop at `end`; all are counted
    latencies.sort()
    return {
        "elapsed_s": elapsed,
        "requests": len(latencies),
        "completion_tokens": tokens,
        "tokens_per_s": tokens / elapsed,
        "latency_p50_s": statistics.median(latencies) if latencies else None,
        "latency_p95_s": latencies[int(0.95 * (len(latencies) - 1))] if latencies else None,
        "feedback_writes": writes,
        "feedback_writes_per_s": writes / elapsed,
        "errors": errors[:10],
        "error_count": len(errors),
        "replicas_answering": len(replicas),
    }


def postgres_writes_per_s(url: str, reward_model: str, seconds: float = 5.0) -> dict[str, Any]:
    """Profile writes straight to PostgreSQL: the store's own bound, no model."""
    from langchain_pad.integrations.postgres import PostgresProfileStore
    from langchain_pad.profiles import PreferenceProfile, reward_model_ref
    from langchain_pad.profiles.testing import HashingEmbedder

    store = PostgresProfileStore(url, embedder=HashingEmbedder(), reward_model=reward_model)
    ref = reward_model_ref(reward_model)
    counts = [0] * 4
    end = time.monotonic() + seconds

    def work(t: int) -> None:
        while time.monotonic() < end:
            store.put(
                PreferenceProfile(
                    user_id=f"bulk{t}-{counts[t] % 50}",
                    weights=user_weights(counts[t]),
                    reward_model=ref,
                )
            )
            counts[t] += 1

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    findings = store.check_integrity()
    store.close()
    return {
        "threads": 4,
        "seconds": seconds,
        "writes": sum(counts),
        "writes_per_s": sum(counts) / seconds,
        "integrity_findings": findings,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs", default="1x1,1x2,2x1", help="REPLICASxTHREADS, comma-separated"
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]

    from langchain_pad.integrations.postgres import PostgresProfileStore
    from langchain_pad.profiles import PreferenceProfile, reward_model_ref
    from langchain_pad.profiles.testing import HashingEmbedder

    work = Path(tempfile.mkdtemp(prefix="pad-capacity-"))
    persrm, loaded = make_reward_model(work / "persrm")
    info = machine_info(loaded)
    del loaded
    records = []
    with throwaway_postgres() as url:
        store = PostgresProfileStore(url, embedder=HashingEmbedder(), reward_model=persrm)
        ref = reward_model_ref(persrm)
        for i in range(16):
            store.put(
                PreferenceProfile(user_id=f"user{i:02d}", weights=user_weights(i), reward_model=ref)
            )
        for replicas, threads in configs:
            print(f"--- {replicas} replica(s) x {threads} thread(s)", flush=True)
            serve_args = [
                "--replicas",
                str(replicas),
                "--replica-threads",
                str(threads),
                "--replica-cpus",
                str(threads),
                "--reward-model",
                persrm,
                "--profiles",
                url,
                "--max-tokens-limit",
                str(args.max_tokens),
                "--batch-window",
                "0.05",
                "--log-level",
                "warning",
            ]
            log = work / f"serve-{replicas}x{threads}.log"
            process, base, startup = start_service(serve_args, log)
            try:
                # warm-up: one answer per replica, untimed
                asyncio.run(load(base, 2 * replicas, 0, 4, 3.0))
                result = asyncio.run(
                    load(base, args.clients, args.writers, args.max_tokens, args.duration)
                )
                result["replica_rss_mb"] = replica_rss_mb()
            finally:
                stop_service(process)
            record = {
                "replicas": replicas,
                "threads_per_replica": threads,
                "cores_used": replicas * threads,
                "startup_s": startup,
                **result,
            }
            print(json.dumps(record), flush=True)
            records.append(record)
        integrity = store.check_integrity()
        store.close()
        raw = postgres_writes_per_s(url, persrm)
    out = {
        "machine": info,
        "settings": {
            "clients": args.clients,
            "writers": args.writers,
            "max_tokens": args.max_tokens,
            "duration_s": args.duration,
            "reward_model": "untrained PersRM, heads + 0.02 * randn (seed 0)",
        },
        "configs": records,
        "store_integrity_after_load": integrity,
        "postgres_direct": raw,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "server_capacity.json").write_text(json.dumps(out, indent=2) + "\n")
    (args.out / "server_capacity.md").write_text(markdown(out))
    print(markdown(out))
    return 0


def markdown(out: dict[str, Any]) -> str:
    m, s = out["machine"], out["settings"]
    lines = [
        "# Server capacity on Ray Serve (`benchmarks/server_capacity.py`)",
        "",
        f"Machine: {m['cpu_model']}, {m['cpus_usable']} usable CPUs, {m['platform']}, torch "
        f"{m['torch']}; load average at start {[round(x, 2) for x in m['load_average_start']]}; "
        f"{m['date']}, commit {m['git_commit']}. Shared with other work: compare ratios "
        "within this run.",
        f"Load: {s['clients']} closed-loop completion clients (greedy, {s['max_tokens']} "
        f"tokens, 16 stored profiles) + {s['writers']} feedback writers, "
        f"new requests for {s['duration_s']:g} s per configuration, each counted to its end; "
        f"reward model: {s['reward_model']}.",
        "",
        "| replicas x threads | cores | start s | load s | requests | tokens/s | p50 s | p95 s "
        "| feedback writes/s | errors | replicas RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in out["configs"]:
        p50 = f"{r['latency_p50_s']:.2f}" if r["latency_p50_s"] is not None else "-"
        p95 = f"{r['latency_p95_s']:.2f}" if r["latency_p95_s"] is not None else "-"
        lines.append(
            f"| {r['replicas']} x {r['threads_per_replica']} | {r['cores_used']} "
            f"| {r['startup_s']:.0f} | {r['elapsed_s']:.0f} | {r['requests']} "
            f"| {r['tokens_per_s']:.1f} | {p50} "
            f"| {p95} | {r['feedback_writes_per_s']:.2f} | {r['error_count']} "
            f"| {r['replica_rss_mb']:.0f} |"
        )
    raw = out["postgres_direct"]
    lines += [
        "",
        f"PostgreSQL alone (`store.put`, {raw['threads']} threads, {raw['seconds']:g} s, "
        f"one transaction each, `fsync=off` test cluster): **{raw['writes_per_s']:.0f} "
        f"writes/s**; integrity findings: {raw['integrity_findings'] or 'none'}. Store "
        f"integrity after the load: {out['store_integrity_after_load'] or 'no findings'}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
