"""What a training run shows while it runs and leaves behind: the progress bar and the loss plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def drop_after(metrics: Path, step: int) -> int:
    """Remove the rows of steps after ``step`` (a run resumed from an earlier checkpoint than its last row,
    after a crash, does those steps again); returns how many were removed."""
    if not metrics.is_file():
        return 0
    lines = [line for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["step"] <= step]
    if len(kept) < len(lines):
        metrics.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    return len(lines) - len(kept)


def plot_loss(metrics: Path, png: Path) -> Path | None:
    if not metrics.is_file():
        return None
    rows = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (calls only)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def progress_bar(total: int, initial: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, file=sys.stderr, unit="step", dynamic_ncols=True)
