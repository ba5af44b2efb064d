"""Calling the OpenAI-compatible PAD server with the official OpenAI client.

Run: `.venv/bin/python examples/openai_server.py [max_tokens]`. It starts
`langchain-pad serve` on a free local port, talks to it, and stops it; against a
server you run yourself, keep only the client part (``base_url`` is all that changes).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
from _demo import reward_model_dir
from openai import OpenAI

QUESTION = "How do airplanes fly?"


def start_server(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", "langchain_pad.cli", "serve", "--port", str(port),
         "--reward-model", reward_model_dir(), "--log-level", "warning"],
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.3)
    server.kill()
    raise RuntimeError("the server did not start")


def main(max_tokens: int = 48) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = start_server(port)
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="not-needed")
        model = client.models.list().data[0].id
        print(f"[models] {model}")

        # one answer per user: the `pad` object carries the user's w_p
        for name, weights in (("expert", {"expertise": 1.0}), ("beginner", {"expertise": -1.0})):
            reply = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": QUESTION}],
                max_tokens=max_tokens,
                temperature=0,
                extra_body={"pad": {"weights": weights}},
            )
            print(f"[{name}] {reply.choices[0].message.content}")

        # streamed, with the per-token PAD rewards alongside the text
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
            extra_body={"pad": {"weights": {"expertise": 1.0}, "return_rewards": True}},
        )
        changed = 0
        print("[stream] ", end="")
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                print(chunk.choices[0].delta.content, end="", flush=True)
            pad = (chunk.model_extra or {}).get("pad") or {}
            changed += sum(bool(c) for c in pad.get("changed", []))
        print(f"\n[rewards] PAD changed the base model's choice at {changed} tokens")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 48)
