"""Start a real ``langchain-pad serve`` process on a free loopback port, and stop it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(
    *args: str,
    log: Path,
    startup: float = 300.0,
    launcher: Path | None = None,
    started: list[subprocess.Popen[bytes]] | None = None,
) -> Iterator[str]:
    """``langchain-pad serve ARGS`` in a subprocess; yields its base URL (``.../v1``).

    ``launcher``: a script run instead of ``python -m langchain_pad.cli`` (with the same
    arguments); ``started`` receives the process (to watch its memory, say).
    """
    port = free_port()
    program = [str(launcher)] if launcher is not None else ["-m", "langchain_pad.cli"]
    command = [sys.executable, *program, "serve", "--port", str(port), *args]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ}
        )
        if started is not None:
            started.append(process)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + startup
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited early:\n{log.read_text()}")
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start:\n{log.read_text()}")
                time.sleep(0.3)
            yield f"{base}/v1"
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
