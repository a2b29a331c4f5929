"""The advice the trainer logs when a CPU run starts on glibc's allocator with its default settings.

Training on CPU over sequences of varying length fragments glibc's heap: resident memory grows step after
step (6.7 -> 13.5 GB over 30 HR steps; a CFB run was killed at 19.4 GB). Measured on the CFB records
(docs/training.md): ``MALLOC_MMAP_THRESHOLD_=1048576`` (every block of 1 MB or more gets its own mmap, returned
on free) holds it at 1-6 GB for about 30% of the speed, as does jemalloc with its defaults; jemalloc with page
decay off is fast but grew to the machine's 24 GB. A process cannot change its allocator once started, so the
trainer says how to start it instead.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping

_THRESHOLD_VAR = "MALLOC_MMAP_THRESHOLD_"
MMAP_THRESHOLD = f"{_THRESHOLD_VAR}=1048576"


def allocator_advice(env: Mapping[str, str], device: str, libc: str | None = None) -> str | None:
    """A line to log when a ``device`` (``"cpu"``, ``"cuda"``) run starts on glibc's default settings; ``None``
    on a GPU, without glibc (``libc``: this system's, :func:`platform.libc_ver`), under jemalloc, or with an
    mmap threshold set."""
    libc = platform.libc_ver()[0] if libc is None else libc
    if device != "cpu" or libc != "glibc" or "jemalloc" in env.get("LD_PRELOAD", "") or _THRESHOLD_VAR in env:
        return None
    return (f"this CPU run uses glibc's allocator, whose heap fragments over sequences of varying length "
            f"(resident memory can grow each step until the system kills the run): where memory is short, "
            f"start it with {MMAP_THRESHOLD} (flat memory, about 30% slower; docs/training.md)")
