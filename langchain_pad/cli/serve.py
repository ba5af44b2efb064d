"""``langchain-pad serve``: the OpenAI-compatible HTTP server (the ``server`` extra)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from langchain_pad.models import DEFAULT_MODEL


def _cmd_serve(args: argparse.Namespace) -> int:
    from langchain_pad.integrations.server import ServerSettings, serve

    if args.multi_user and args.unknown_user == "error":
        print(
            "error: --multi-user falls back for unknown users (a 404 would tell which user "
            "ids exist); leave --unknown-user at fallback",
            file=sys.stderr,
        )
        return 2
    reward_model = None if args.reward_model == "none" else args.reward_model
    if reward_model is not None:
        from langchain_pad.models import resolve_reward_model

        try:
            resolved = resolve_reward_model(reward_model)
        except FileNotFoundError as exc:
            print(f"error: {exc} (or serve without PAD: --reward-model none)", file=sys.stderr)
            return 2
        if not Path(resolved).is_dir():
            print(f"error: --reward-model {reward_model}: no such directory", file=sys.stderr)
            return 2
    store: Any = None  # it seeds the anchors of the PersRM served, whatever its location
    if args.profiles is not None and args.profiles.startswith(("postgresql://", "postgres://")):
        from langchain_pad.integrations.postgres import PostgresProfileStore

        store = PostgresProfileStore(args.profiles, reward_model=reward_model)
    elif args.profiles is not None:
        from langchain_pad.profiles import SQLiteProfileStore

        store = SQLiteProfileStore(args.profiles, reward_model=reward_model)
    settings = ServerSettings(
        model=args.model,
        reward_model=reward_model,
        served_model_name=args.served_model_name,
        dtype=args.dtype,
        default_max_tokens=args.default_max_tokens,
        max_tokens_limit=args.max_tokens_limit,
        max_request_bytes=args.max_request_bytes,
        max_batch_size=args.max_batch_size,
        batch_window=args.batch_window,
        max_waves=args.max_waves,
        token_budget=args.token_budget or None,
        profile_store=store,
        unknown_user=args.unknown_user,
        multi_user=args.multi_user,
        body_timeout=args.body_timeout,
    )
    serve(settings, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve", help="serve the model over an OpenAI-compatible HTTP API (needs the server extra)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--model", default=DEFAULT_MODEL, help="model name, hub id or directory")
    serve.add_argument(
        "--reward-model", default="default", help="PersRM directory, 'default' or 'none'"
    )
    serve.add_argument("--served-model-name", default=None, help="name clients pass as model")
    serve.add_argument(
        "--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="float32"
    )
    serve.add_argument("--default-max-tokens", type=int, default=256)
    serve.add_argument("--max-tokens-limit", type=int, default=1024)
    serve.add_argument("--max-request-bytes", type=int, default=1 << 20)
    serve.add_argument("--max-batch-size", type=int, default=32)
    serve.add_argument(
        "--batch-window", type=float, default=0.02, help="seconds a batch waits for more requests"
    )
    serve.add_argument(
        "--max-waves", type=int, default=4, help="batches decoded at once, a step of each in turn"
    )
    serve.add_argument(
        "--profiles", default=None, help="profile store: a SQLite file or a postgresql:// URL"
    )
    serve.add_argument("--unknown-user", choices=["fallback", "error"], default="fallback")
    serve.add_argument(
        "--token-budget",
        type=int,
        default=32768,
        help="prompt + new tokens decoded at once; longer traffic queues (0: no budget)",
    )
    serve.add_argument(
        "--multi-user",
        action="store_true",
        help="responses never name other users nor show stored profiles' data "
        "(default: a local, single-tenant server that shows everything)",
    )
    serve.add_argument(
        "--body-timeout",
        type=float,
        default=10.0,
        help="seconds a request body may take to arrive (then 408)",
    )
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(handler=_cmd_serve)
