"""Process-wide caches: one reward model and one decoding thread per configuration.

LangChain builds chat models freely (every ``bind``, every ``with_config``), so the
heavy parts hang off these caches, keyed by what they depend on, not off instances.
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langchain_pad.engine import BatchScheduler
    from langchain_pad.engine.pad import Normalization
    from langchain_pad.models import LoadedModel
    from langchain_pad.reward_model import PersonalizedRewardModel

_lock = threading.Lock()
_schedulers: dict[tuple[str, str, str | None, str], BatchScheduler] = {}
_reward_models: dict[tuple[str, str, str], PersonalizedRewardModel] = {}


def reward_model_for(path: str, loaded: LoadedModel) -> PersonalizedRewardModel:
    """Load (once) the PersRM stored at ``path`` for this base model."""
    from langchain_pad.reward_model import PersonalizedRewardModel

    resolved = str(Path(path).expanduser().resolve())
    key = (resolved, loaded.location, str(loaded.model.dtype))
    with _lock:
        rm = _reward_models.get(key)
        if rm is None:
            rm = PersonalizedRewardModel.load(resolved, loaded.model)
            _reward_models[key] = rm
        return rm


def scheduler_for(
    loaded: LoadedModel,
    dtype: str,
    max_batch_size: int,
    reward_model: PersonalizedRewardModel | None = None,
    reward_model_path: str | None = None,
    normalize: Normalization = "candidates",
) -> BatchScheduler:
    """The decoding thread for this model (and reward model), created on first use."""
    from langchain_pad.engine import BatchScheduler, DecodingEngine
    from langchain_pad.engine.pad import PADGuide

    key = (loaded.location, dtype, reward_model_path, normalize)
    with _lock:
        scheduler = _schedulers.get(key)
        if scheduler is None:
            engine = DecodingEngine(
                loaded.model,
                loaded.tokenizer,
                eos_token_ids=loaded.eos_token_ids,
                context_length=loaded.context_length,
            )
            guide = PADGuide(reward_model, normalize=normalize) if reward_model else None
            scheduler = BatchScheduler(engine, guide=guide, max_batch_size=max_batch_size)
            _schedulers[key] = scheduler
        return scheduler


@atexit.register
def close_all() -> None:
    """Cancel open streams and join decoding threads before the interpreter tears down."""
    with _lock:
        schedulers = list(_schedulers.values())
    for scheduler in schedulers:
        scheduler.close(cancel_running=True)
