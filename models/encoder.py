"""The shared sentence encoder (MiniLM from the model store) behind every text classifier."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["SentenceEncoder"]


class SentenceEncoder:
    """Unit-length sentence embeddings from a local sentence-transformers folder."""

    def __init__(self, model_dir: Path, *, threads: int | None = None) -> None:
        self._model_dir = model_dir
        self._threads = threads
        self._model: Any = None

    def load(self) -> None:
        """Load the encoder (about half a second for MiniLM)."""
        if self._threads is not None:
            import torch

            torch.set_num_threads(self._threads)
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(self._model_dir), device="cpu", local_files_only=True)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> npt.NDArray[np.float32]:
        """Embeddings, one row per text, L2-normalised."""
        if self._model is None:
            self.load()
        vectors = self._model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)
