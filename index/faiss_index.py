"""An immutable FAISS HNSW index over unit vectors (inner product = cosine similarity).

The HNSW graph sits inside an ``IndexIDMap2``: vectors carry our own 63-bit ids (derived
from the chunk id, so a chunk keeps its id across versions) and can be read back by id.
HNSW cannot remove vectors, so a deletion builds a new index from the vectors that stay
(read back here, never re-embedded); see ``index.store`` for how versions are swapped.

A built or loaded :class:`VectorIndex` is never mutated (``efSearch`` is fixed when it is
built or loaded), so any number of threads may search it at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from index.errors import IndexUnavailable

__all__ = ["HNSWOptions", "VectorIndex", "vector_id"]

Vectors = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class HNSWOptions:
    """HNSW graph parameters: ``m`` links per node; ``ef_*`` candidate-list sizes."""

    m: int = 32
    ef_construction: int = 80
    ef_search: int = 64

    def __post_init__(self) -> None:
        if self.m < 2 or self.ef_construction < 1 or self.ef_search < 1:
            msg = f"HNSW needs m >= 2 and ef_* >= 1, got {self}"
            raise ValueError(msg)


def vector_id(chunk_id: str) -> int:
    """A stable non-negative 63-bit id for a chunk id."""
    return int.from_bytes(hashlib.sha256(chunk_id.encode()).digest()[:8], "big") >> 1


def _hnsw(index: Any) -> Any:
    import faiss

    graph: Any = faiss.downcast_index(index.index)
    return graph.hnsw


class VectorIndex:
    """A searchable, immutable set of unit vectors with int64 ids."""

    def __init__(self, index: Any, dim: int) -> None:
        self._index = index
        self.dim = dim

    @classmethod
    def build(cls, vectors: Vectors, ids: Ids, options: HNSWOptions | None = None) -> VectorIndex:
        """An HNSW index over ``vectors`` (rows L2-normalised), one id per row."""
        import faiss

        options = options or HNSWOptions()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if vectors.ndim != 2 or vectors.shape[0] != ids.shape[0]:
            msg = f"vectors {vectors.shape} and ids {ids.shape} do not match"
            raise ValueError(msg)
        if len(np.unique(ids)) != len(ids):
            msg = "vector ids must be unique"
            raise ValueError(msg)
        dim = int(vectors.shape[1])
        graph = faiss.IndexHNSWFlat(dim, options.m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = options.ef_construction
        graph.hnsw.efSearch = options.ef_search
        index = faiss.IndexIDMap2(graph)
        if len(ids):
            index.add_with_ids(vectors, ids)
        return cls(index, dim)

    @classmethod
    def load(cls, path: Path, options: HNSWOptions | None = None) -> VectorIndex:
        """Read an index written by :meth:`save`; ``options.ef_search`` applies."""
        import faiss

        try:
            index = faiss.read_index(str(path))
            _hnsw(index).efSearch = (options or HNSWOptions()).ef_search
        except (RuntimeError, AttributeError) as exc:
            msg = f"The vector index {path} cannot be read ({exc}); re-index the knowledge base."
            raise IndexUnavailable(msg) from exc
        return cls(index, int(index.d))

    def save(self, path: Path) -> None:
        """Write the index to one file."""
        import faiss

        faiss.write_index(self._index, str(path))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def search(self, queries: Vectors, k: int) -> tuple[Vectors, Ids]:
        """Scores and ids of the ``k`` nearest rows per query; missing ones have id -1."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            msg = f"query vectors have {queries.shape[1]} dimensions, the index {self.dim}"
            raise ValueError(msg)
        scores, ids = self._index.search(queries, k)
        return np.asarray(scores, dtype=np.float32), np.asarray(ids, dtype=np.int64)

    def vectors(self, ids: Ids) -> Vectors:
        """The stored vectors of ``ids`` (each must be in the index)."""
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for row, key in enumerate(ids):
            out[row] = self._index.reconstruct(int(key))
        return out
