"""The package layout of design.md section 2, held by a test: dependencies point one way, and a module
over 400 lines says at its top why it is one module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("server", "routines", "memory", "trainer", "evals", "scenarios")
FORBIDDEN = {
    "routines": {"memory", "server", "trainer", "evals", "scenarios"},
    "memory": {"server", "trainer", "evals", "scenarios"},
    "evals": {"server", "trainer", "scenarios"},
    "trainer": {"server", "scenarios"},  # trainer may use evals' checker (one way: evals never imports trainer)
}
LONG = 400


def modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports, at any depth (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependencies_point_one_way(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in modules(package)
        if imported_packages(path) & FORBIDDEN[package]
    }
    assert wrong == {}, f"{package} must not import {sorted(FORBIDDEN[package])}"


def test_a_long_module_says_why_it_is_one_module() -> None:
    unexplained = []
    for package in PACKAGES:
        for path in modules(package):
            text = path.read_text(encoding="utf-8")
            if text.count("\n") > LONG:
                doc = ast.get_docstring(ast.parse(text)) or ""
                if "one module" not in doc.lower():
                    unexplained.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert unexplained == [], f"over {LONG} lines without a reason ('... one module ...') in the docstring"
