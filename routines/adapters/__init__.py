"""LoRA adapters shipped with the package for the embedded executor (``routines/adapters/<name>/``: a standard
peft folder written by ``routine train``). Found without importing torch."""

from __future__ import annotations

from pathlib import Path

ADAPTERS_DIR = Path(__file__).resolve().parent


def shipped_adapter(name: str = "hr") -> Path | None:
    """The shipped adapter ``name``, or None when this install has none."""
    path = ADAPTERS_DIR / name
    return path if (path / "adapter_config.json").is_file() else None
