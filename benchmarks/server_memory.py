"""Peak memory of a real server under 8 concurrent ~8,000-word personalized prompts.

Issue 17 found six such prompts took a server from 3.1 GB to a 10.8 GB peak (no
token budget then). This starts ``langchain-pad serve`` (the default token budget),
sends 8 long personalized requests at once, samples the RSS of the server process and
its children every 0.1 s (psutil), and writes ``results/server_memory.{json,md}``.

    python benchmarks/server_memory.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

RESULTS = Path(__file__).with_name("results")
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "near", "our"]
CONCURRENT = 8
PROMPT_WORDS = 8000


def _rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a child that just ended
            total += p.memory_info().rss
    return total


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _send(base: str) -> list[tuple[int, str, float]]:
    text = " ".join(WORDS[i % len(WORDS)] for i in range(PROMPT_WORDS))
    body = {
        "messages": [{"role": "user", "content": f"Summarize this text: {text}"}],
        "max_tokens": 16,
        "temperature": 0,
        "pad": {"weights": {"expertise": -1.0}},
    }
    async with httpx.AsyncClient(timeout=1800) as client:

        async def one() -> tuple[int, str, float]:
            start = time.monotonic()
            answer = await client.post(f"{base}/v1/chat/completions", json=body)
            return answer.status_code, answer.text[:300], round(time.monotonic() - start, 1)

        return list(await asyncio.gather(*(one() for _ in range(CONCURRENT))))


def measure(log: Path, *extra: str) -> dict[str, Any]:
    """Run the load once; the figures as a dict."""
    port = _free_port()
    command = [sys.executable, "-m", "langchain_pad.cli", "serve", "--port", str(port)]
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*command, "--log-level", "warning", *extra], stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"server exited early:\n{log.read_text()}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.3)
        process = psutil.Process(server.pid)
        baseline = _rss(process)
        peak = [baseline]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _rss(process))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.monotonic()
        answers = asyncio.run(_send(base))
        seconds = time.monotonic() - start
        done.set()
        sampler.join()
        stats = httpx.get(f"{base}/v1/pad/stats", timeout=30).json()
        return {
            "concurrent": CONCURRENT,
            "prompt_words": PROMPT_WORDS,
            "statuses": [status for status, _, _ in answers],
            "answer_seconds": [seconds for _, _, seconds in answers],
            "errors": [text for status, text, _ in answers if status != 200],
            "baseline_rss_gb": round(baseline / 2**30, 2),
            "peak_rss_gb": round(peak[0] / 2**30, 2),
            "after_rss_gb": round(_rss(process) / 2**30, 2),
            "seconds": round(seconds, 1),
            "token_budget": stats["token_budget"],
            "prefill_budget": stats.get("prefill_budget"),
            "queue_timeout": stats.get("queue_timeout"),
            "wave_sizes": stats["wave_sizes"],
            "alive": server.poll() is None,
        }
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def main() -> None:
    RESULTS.mkdir(exist_ok=True)
    result = measure(RESULTS / "server_memory.log")
    (RESULTS / "server_memory.log").unlink(missing_ok=True)
    result["machine"] = {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu": _cpu_name(),
    }
    (RESULTS / "server_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "server_memory.md").write_text(
        "# Server memory under 8 concurrent 8,000-word personalized prompts\n\n"
        f"`python benchmarks/server_memory.py`, one run: statuses {result['statuses']} "
        f"after {result['answer_seconds']} s; "
        f"RSS (server + children) {result['baseline_rss_gb']} GB after start-up, peak "
        f"{result['peak_rss_gb']} GB, {result['after_rss_gb']} GB after; "
        f"{result['seconds']} s; token budget {result['token_budget']}, prefill budget "
        f"{result['prefill_budget']}, queue timeout {result['queue_timeout']} s, waves "
        f"{result['wave_sizes']}. Machine: {result['machine']}.\n\n"
        "Errors (first 300 characters):\n\n"
        + "".join(f"- `{error}`\n" for error in result["errors"])
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
