"""Shared set-up of the examples: which PersRM to steer with.

The trained default PersRM ships inside the package once it exists; until then (or
when it is missing from an install) the examples build an *untrained* demo PersRM with
slightly perturbed heads, so that every example runs: the personalization machinery
is real, but what the steering changes in the text is then arbitrary.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path


def reward_model_dir() -> str:
    """``$LANGCHAIN_PAD_REWARD_MODEL``, else the shipped default, else a demo PersRM."""
    override = os.environ.get("LANGCHAIN_PAD_REWARD_MODEL")
    if override:
        return override
    from langchain_pad.models import default_reward_model_path

    if (default_reward_model_path() / "persrm.safetensors").is_file():
        return "default"
    cache = Path(tempfile.gettempdir()) / "langchain-pad-demo-persrm"
    if not (cache / "persrm.safetensors").is_file():
        import torch

        from langchain_pad.models import load_model
        from langchain_pad.reward_model import PersonalizedRewardModel

        rm = PersonalizedRewardModel(
            load_model().model, ["expertise", "informativeness", "style"], beta=1.0
        )
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            rm.heads.add_(0.02 * torch.randn(rm.heads.shape, generator=generator))
        staging = Path(tempfile.mkdtemp(prefix="persrm-", dir=cache.parent))
        rm.save(staging)
        with contextlib.suppress(OSError):  # another example built it meanwhile
            staging.rename(cache)
    print(
        "note: no trained default PersRM in this install; using an untrained demo PersRM "
        f"({cache}): the steering is real, its effect on the text arbitrary.",
        file=sys.stderr,
    )
    return str(cache)
