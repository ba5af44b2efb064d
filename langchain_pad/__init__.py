"""langchain-pad: personalize a local LLM per user at decoding time (PAD, ICLR 2025)."""

from __future__ import annotations

import importlib.util
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_pad.callbacks import AsyncTokenRewardHandler, TokenRewardHandler
from langchain_pad.chat_model import PADChatModel
from langchain_pad.models import DEFAULT_MODEL, ModelLoadError, load_model
from langchain_pad.traces import RunTrace, TokenRecord

if TYPE_CHECKING:
    from langchain_pad.preferences import PreferenceResolver, ProfileMismatchError
    from langchain_pad.profiles import (
        InMemoryProfileStore,
        PreferenceProfile,
        ProfileStore,
        SQLiteProfileStore,
    )
    from langchain_pad.reward_model import PersonalizedRewardModel, RewardModelMismatchError
    from langchain_pad.runtime import PADRuntime
    from langchain_pad.training import PreferencePair, fit_preference_weights

try:
    __version__ = metadata.version("langchain-pad")
except metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = ""


def _expose_checkout_integrations() -> None:
    """In a source checkout, serve the top-level ``integrations/`` as ``.integrations``.

    The wheel ships that folder inside this package (pyproject's ``force-include``). A
    checkout (``pip install -e .``, ``PYTHONPATH``, the tests) has it beside the package
    instead, so register it under the name the wheel gives it. Only a directory that holds
    ``pyproject.toml`` counts as a checkout; an installed package is never touched.
    """
    package = Path(__file__).parent
    root = package.parent
    init = root / "integrations" / "__init__.py"
    if (package / "integrations").exists() or not (
        (root / "pyproject.toml").is_file() and init.is_file()
    ):
        return
    spec = importlib.util.spec_from_file_location(
        f"{__name__}.integrations", init, submodule_search_locations=[str(init.parent)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)  # a docstring: each adapter loads on its own import
    globals()["integrations"] = module


_expose_checkout_integrations()

# torch-heavy names load on first access, so `import langchain_pad` stays cheap.
_LAZY = {
    "PADRuntime": "langchain_pad.runtime",
    "PreferenceResolver": "langchain_pad.preferences",
    "ProfileMismatchError": "langchain_pad.preferences",
    "PersonalizedRewardModel": "langchain_pad.reward_model",
    "RewardModelMismatchError": "langchain_pad.reward_model",
    "PreferencePair": "langchain_pad.training",
    "fit_preference_weights": "langchain_pad.training",
    "InMemoryProfileStore": "langchain_pad.profiles",
    "PreferenceProfile": "langchain_pad.profiles",
    "ProfileStore": "langchain_pad.profiles",
    "SQLiteProfileStore": "langchain_pad.profiles",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'langchain_pad' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MODEL",
    "AsyncTokenRewardHandler",
    "InMemoryProfileStore",
    "ModelLoadError",
    "PADChatModel",
    "PADRuntime",
    "PersonalizedRewardModel",
    "PreferencePair",
    "PreferenceProfile",
    "PreferenceResolver",
    "ProfileMismatchError",
    "ProfileStore",
    "RewardModelMismatchError",
    "RunTrace",
    "SQLiteProfileStore",
    "TokenRecord",
    "TokenRewardHandler",
    "__version__",
    "fit_preference_weights",
    "load_model",
]
