"""The ``langchain-pad`` command: model set-up, a demo, training, profiles and a server.

One module per command group; each adds its commands to the parser with
``add_parser(commands)`` and sets ``handler`` to the function that runs them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from langchain_pad.cli import data, demo, models, profiles, serve, training

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="langchain-pad",
        description="Personalized decoding-time alignment (PAD) for LangChain.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (demo, data, training, models, serve, profiles):
        group.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from langchain_pad.models import ModelLoadError

    try:
        code: int = args.handler(args)
    except (ModelLoadError, ValueError, RuntimeError, KeyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return code
