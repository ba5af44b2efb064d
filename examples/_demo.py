"""Shared set-up of the examples: which PersRM to steer with."""

from __future__ import annotations

import os


def reward_model_dir() -> str:
    """``$LANGCHAIN_PAD_REWARD_MODEL`` (a PersRM directory), else the shipped default."""
    return os.environ.get("LANGCHAIN_PAD_REWARD_MODEL") or "default"
