"""``langchain-pad serve``: the OpenAI-compatible HTTP server (the ``server`` extra)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from langchain_pad.models import DEFAULT_MODEL, DTYPES


def _cmd_serve(args: argparse.Namespace) -> int:
    from langchain_pad.integrations.server import ServerSettings, serve
    from langchain_pad.integrations.server_auth import ApiKeys, check_bind

    api_keys: ApiKeys | None = None
    try:  # both before any model is loaded: a typo should not cost a minute
        if args.api_keys is not None:
            api_keys = ApiKeys.load(args.api_keys)
        check_bind(
            args.host,
            keyed=api_keys is not None,
            allow_unauthenticated_remote=args.allow_unauthenticated_remote,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
    # --- scale-out on Ray Serve (--replicas / --ray-address): refused before any store opens
    replicated = args.replicas is not None or args.ray_address is not None
    replicas = 1 if args.replicas is None else args.replicas
    if replicated and (refusal := _replica_refusal(args, replicas)) is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    # --- end of the Ray Serve block
    store: Any = None  # it seeds the anchors of the PersRM served, whatever its location
    if replicated:
        pass  # each replica opens its own connection to the store (see ray_serve)
    elif args.profiles is not None and args.profiles.startswith(("postgresql://", "postgres://")):
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
        gate=args.gate,
        compile_steps=args.compile_steps,
        default_max_tokens=args.default_max_tokens,
        max_tokens_limit=args.max_tokens_limit,
        max_request_bytes=args.max_request_bytes,
        max_batch_size=args.max_batch_size,
        batch_window=args.batch_window,
        max_waves=args.max_waves,
        token_budget=args.token_budget or None,
        queue_timeout=args.queue_timeout or None,
        prefill_budget=args.prefill_budget or None,
        profile_store=store,
        unknown_user=args.unknown_user,
        multi_user=args.multi_user,
        api_keys=args.api_keys,
        max_in_flight_per_key=args.max_in_flight_per_key or None,
        tokens_per_minute_per_key=args.tokens_per_minute_per_key or None,
        body_timeout=args.body_timeout,
    )
    if replicated:  # --- Ray Serve
        return _serve_replicated(args, replicas, settings)
    serve(
        settings,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        allow_unauthenticated_remote=args.allow_unauthenticated_remote,
    )
    return 0


# ---------------------------------------------------------------------- Ray Serve


def _replica_refusal(args: argparse.Namespace, replicas: int) -> str | None:
    """Why these replica flags cannot run, or None (checked before anything starts)."""
    if replicas < 1:
        return f"--replicas {replicas}: give a number of replicas >= 1"
    if not args.replica_cpus > 0:
        return f"--replica-cpus {args.replica_cpus}: give a number > 0 (0.5 is allowed)"
    if args.replica_threads < 1:
        return f"--replica-threads {args.replica_threads}: give a number of threads >= 1"
    try:
        from langchain_pad.integrations.ray_serve import check_profiles
    except ImportError as exc:
        return f"{exc} (--replicas and --ray-address run on Ray Serve)"
    try:
        check_profiles(args.profiles, replicas)
    except ValueError as exc:
        return f"--profiles {str(exc).removeprefix('profiles=')}"
    return None


def _serve_replicated(args: argparse.Namespace, replicas: int, settings: Any) -> int:
    from langchain_pad.integrations.ray_serve import ReplicaOptions, serve_replicas

    options = ReplicaOptions(
        replicas=replicas,
        cpus_per_replica=args.replica_cpus,
        threads_per_replica=args.replica_threads,
    )
    try:
        serve_replicas(
            settings,
            profiles=args.profiles,
            options=options,
            ray_address=args.ray_address,
            host=args.host,
            port=args.port,
            allow_unauthenticated_remote=args.allow_unauthenticated_remote,
        )
    except ValueError as exc:  # what the single-process server refuses too (a bind)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _add_replica_flags(serve: argparse.ArgumentParser) -> None:
    ray = serve.add_argument_group("scale-out on Ray Serve (needs the ray extra)")
    ray.add_argument(
        "--replicas",
        type=int,
        default=None,
        help="serve on Ray Serve: this many replicas behind its proxy, each with its own "
        "model and batching (more than 1 needs a postgresql:// --profiles store); "
        "without it, one process serves",
    )
    ray.add_argument(
        "--ray-address",
        default=None,
        help="join this Ray cluster (e.g. ray://head:10001 or auto) instead of starting a "
        "local Ray instance",
    )
    ray.add_argument(
        "--replica-cpus",
        type=float,
        default=1.0,
        help="Ray CPUs each replica reserves (fractional allowed); a local Ray instance gets "
        "replicas x this many",
    )
    ray.add_argument(
        "--replica-threads", type=int, default=1, help="torch threads each replica decodes with"
    )


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
        "--dtype",
        choices=list(DTYPES),
        default="float32",
    )
    serve.add_argument(
        "--no-gate",
        dest="gate",
        action="store_false",
        help="score every token with the PersRM (default: skip tokens the floor leaves alone)",
    )
    serve.add_argument(
        "--compile-steps",
        action="store_true",
        help="decode through torch.compile: faster tokens; start-up compiles first (one to "
        "four minutes on 2 cores; needs a C++ compiler)",
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
        "--prefill-budget",
        type=int,
        default=8192,
        help="prompt tokens (rows x longest prompt) prefilled in one pass (0: no cap)",
    )
    serve.add_argument(
        "--queue-timeout",
        type=float,
        default=120.0,
        help="seconds a request may wait for decoding to start before a 503 (0: no limit)",
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
    serve.add_argument(
        "--api-keys",
        default=None,
        metavar="FILE",
        help='JSON file: {"KEY": "user-id", "KEY2": {"user_id": "ops", "admin": true}}; '
        "every route but /health and /metrics then needs Authorization: Bearer KEY",
    )
    serve.add_argument(
        "--allow-unauthenticated-remote",
        action="store_true",
        help="without --api-keys, listen on a non-loopback --host anyway (anyone who "
        "reaches the server may use every profile)",
    )
    serve.add_argument(
        "--max-in-flight-per-key",
        type=int,
        default=64,
        help="requests one key (without keys: the server) may have open at once; "
        "more is a 429 (0: no limit)",
    )
    serve.add_argument(
        "--tokens-per-minute-per-key",
        type=int,
        default=1_000_000,
        help="prompt + max_tokens one key may reserve per minute; more is a 429 (0: no limit)",
    )
    serve.add_argument("--log-level", default="info")
    _add_replica_flags(serve)
    serve.set_defaults(handler=_cmd_serve)
