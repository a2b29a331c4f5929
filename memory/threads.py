"""How procedure memory's arithmetic runs on a busy CPU: on one thread.

A question's forward pass and a matrix-vector product over the stored vectors are small and bound by memory;
on this shared 2-core CPU, extra threads only wait for each other and for the other jobs: torch's default two
threads took 160 ms per question where one took 24 ms, and multi-threaded BLAS made the product 10 to 40
times slower (docs/procedure-memory.md, Speed). Batch embedding keeps torch's threads.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_TORCH_LOCK = threading.Lock()
_CONTROLLER: Any = None


@contextlib.contextmanager
def one_torch_thread(active: bool = True) -> Iterator[None]:
    """torch on one thread inside the block (torch's thread count is per process: restored after)."""
    if not active:
        yield
        return
    import torch

    with _TORCH_LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """BLAS (numpy's matrix products) on one thread inside the block."""
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController  # comes with sentence-transformers (scikit-learn)

            _CONTROLLER = ThreadpoolController()
        except ImportError:
            _CONTROLLER = False
    if _CONTROLLER is False:
        return contextlib.nullcontext()
    return _CONTROLLER.limit(limits=1, user_api="blas")
