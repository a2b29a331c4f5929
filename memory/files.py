"""Files of procedure memory and the run log hold what downstream tools returned (salaries, member lists):
they are created readable by their owner only."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def private_file(path: str | Path) -> Path:
    """Create ``path`` (and its folder) for its owner only: the folder 0700 when it is new, the file 0600; an
    existing file readable by others is tightened to 0600. SQLite gives its -wal and -shm files the same mode."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path
