"""langchain-pad: personalize a local LLM per user at decoding time (PAD, ICLR 2025)."""

from importlib import metadata

from langchain_pad.chat_model import PADChatModel
from langchain_pad.models import DEFAULT_MODEL, ModelLoadError, load_model

try:
    __version__ = metadata.version("langchain-pad")
except metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = ""

__all__ = ["DEFAULT_MODEL", "ModelLoadError", "PADChatModel", "__version__", "load_model"]
