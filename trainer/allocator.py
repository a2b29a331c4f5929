"""Which memory allocator a CPU run should use, and the advice the trainer logs when it runs on another.

Training on CPU over sequences of varying length fragments glibc's heap: resident memory grows step after
step (7 -> 13.5 GB over 30 HR steps, killed at 19.4 GB on the CFB records; docs/training.md). glibc's
``MALLOC_MMAP_THRESHOLD_`` holds it flat but costs about 30% of the speed; jemalloc with page decay off holds
it flat (about 10 GB on the CFB records) at full speed. A process cannot change its allocator once started,
so the trainer says how to start it instead.
"""

from __future__ import annotations

import ctypes.util
from collections.abc import Callable, Mapping

JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
"""Keep freed pages for reuse rather than returning them to the system after 10 s (jemalloc's default), which
costs page faults on every step's reallocations (measured: 108-126 against 143-170 tokens/s)."""


def allocator_advice(env: Mapping[str, str], device: str,
                     find_library: Callable[[str], str | None] = ctypes.util.find_library) -> str | None:
    """A line to log when a ``device`` (``"cpu"``, ``"cuda"``) run is not under jemalloc; ``None`` when it is,
    or on a GPU."""
    if device != "cpu" or "jemalloc" in env.get("LD_PRELOAD", ""):
        return None
    jemalloc = find_library("jemalloc")
    start = (f"start it with LD_PRELOAD={jemalloc} MALLOC_CONF={JEMALLOC_CONF}" if jemalloc
             else f"install jemalloc (Debian: libjemalloc2) and start it with LD_PRELOAD=libjemalloc.so.2 "
                  f"MALLOC_CONF={JEMALLOC_CONF}")
    return (f"this CPU run uses glibc's allocator, whose heap fragments over sequences of varying length "
            f"(resident memory grows each step): {start} (docs/training.md)")
