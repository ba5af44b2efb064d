"""Moved to :mod:`langchain_pad.models` (kept until every caller is updated)."""

from langchain_pad.models import (
    DEFAULT_REWARD_MODEL,
    default_reward_model_path,
    resolve_reward_model,
)

__all__ = ["DEFAULT_REWARD_MODEL", "default_reward_model_path", "resolve_reward_model"]
