"""Where reward models live: the default PersRM shipped inside the package, or a path."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_REWARD_MODEL = "default"
"""Name of the PersRM trained for the embedded SmolLM2-135M-Instruct and shipped here."""


def default_reward_model_path() -> Path:
    return Path(str(resources.files("langchain_pad") / "default_persrm"))


def resolve_reward_model(name_or_path: str) -> str:
    """``"default"`` -> the shipped directory; anything else is a PersRM directory."""
    if name_or_path != DEFAULT_REWARD_MODEL:
        return name_or_path
    path = default_reward_model_path()
    if not (path / "persrm.safetensors").is_file():
        raise FileNotFoundError(
            f"the default reward model is missing from this install ({path}); reinstall "
            "langchain-pad, or pass reward_model=<PersRM directory> (`langchain-pad train`)."
        )
    return str(path)
