"""The matrices retrieval searches in memory: stored unit vectors times one question's vector.

Small matrices stay float32 and numpy multiplies them on one BLAS thread. From :data:`HALF_FROM` numbers on
(2,731 vectors of 384 dimensions) a matrix is held in float16 and torch multiplies it on one thread: a
matrix-vector product reads every number once, so half the bytes is about half the time, and half the memory
(at 10,000 Routines with 50,000 example questions, 38 MB instead of 77). Scores then differ from float32 by
about 1e-4 (the float16 rounding of the vectors, the question and the product; measured 1.0e-4 at most over
50,000 random unit vectors). numpy has no fast float16 product (74 ms for those 50,000), so without torch the
matrix stays float32. docs/procedure-memory.md (Speed) has the timings.
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any

import numpy as np

from memory.threads import one_blas_thread, one_torch_thread

HALF_FROM = 1 << 20
"""Matrices of at least this many numbers are held in float16 (where torch is installed)."""


class VectorMatrix:
    """An (n, dim) matrix of unit vectors to multiply by one vector; ``dot`` returns float32 scores."""

    def __init__(self, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        self.shape: tuple[int, ...] = vectors.shape
        self._full: np.ndarray | None = vectors
        self._half: Any = None
        if vectors.size >= HALF_FROM and find_spec("torch") is not None:
            import torch

            self._half = torch.from_numpy(vectors.astype(np.float16))
            self._full = None

    @property
    def half(self) -> bool:
        """Whether the matrix is held in float16."""
        return self._half is not None

    def __len__(self) -> int:
        return self.shape[0]

    def dot(self, vector: np.ndarray) -> np.ndarray:
        """The matrix times ``vector``: one float32 score per row (a new array)."""
        if self._half is not None:
            import torch

            with one_torch_thread():  # the conversions too: on a busy CPU a second thread costs ~8 ms to wake
                query = torch.from_numpy(np.asarray(vector, dtype=np.float32)).half()
                return torch.mv(self._half, query).float().numpy()
        assert self._full is not None
        with one_blas_thread():
            return self._full @ np.asarray(vector, dtype=np.float32)
