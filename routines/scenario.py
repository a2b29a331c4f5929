"""A scenario on disk: its Routines, user drafts, query sets, gold trajectories and the downstream servers
to start. Distillation and evaluation read scenarios as data through this module and reach the scenario's
tools only as MCP servers, so nothing imports a scenario's code.

A scenario directory holds ``scenario.json``::

    {"name": "hr", "routines": "routines", "drafts": "drafts",
     "queries": "data/queries_{split}.jsonl", "gold": "data/gold_{split}.jsonl",
     "servers": {"mcpServers": {"hr": {"command": "{python}", "args": ["-m", "scenarios.hr", "--db", "{data_dir}/hr.sqlite"]}}}}

``{python}`` is this interpreter, ``{data_dir}`` the caller's data directory, ``{scenario_dir}`` the folder.
A query or gold file may also be gzipped (``.jsonl.gz``). A scenario whose files are generated at set-up time
(``cfb``) names the command in ``"build"``; a missing file then says to run it.
"""

from __future__ import annotations

import gzip
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from routines.errors import CallerError
from routines.model import Routine

BUILTIN_ROOT = Path(__file__).resolve().parent.parent / "scenarios"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists() and Path(str(path) + ".gz").exists():
        path = Path(str(path) + ".gz")
    if not path.exists():
        raise CallerError(f"scenario file {path} is missing")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _fill(value: Any, subs: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, sub in subs.items():
            value = value.replace("{" + key + "}", sub)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, subs) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, subs) for v in value]
    return value


@dataclass(frozen=True)
class Scenario:
    name: str
    root: Path
    manifest: dict[str, Any]

    @classmethod
    def load(cls, name_or_path: str | Path) -> Scenario:
        """A built-in scenario by name (``hr``) or a scenario directory."""
        path = Path(name_or_path)
        if not (path / "scenario.json").exists():
            path = BUILTIN_ROOT / str(name_or_path)
        manifest_path = path / "scenario.json"
        if not manifest_path.exists():
            known = sorted(p.name for p in BUILTIN_ROOT.iterdir() if (p / "scenario.json").exists()) if BUILTIN_ROOT.exists() else []
            raise CallerError(f"no scenario {str(name_or_path)!r}; built-in: {', '.join(known) or 'none'}, or give a directory with scenario.json")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        return cls(name=manifest.get("name", path.name), root=path, manifest=manifest)

    @property
    def today(self) -> str | None:
        """The scenario's fixed reference date (``YYYY-MM-DD``), when its data has one."""
        return self.manifest.get("today")

    @property
    def memory_layout(self) -> Literal["fields", "nested"]:
        """How the scenario's long tool results are shown to the model (``scenario.json`` ``memory``)."""
        layout = self.manifest.get("memory", "fields")
        if layout not in ("fields", "nested"):
            raise CallerError(f"scenario {self.name}: 'memory' is {layout!r} in scenario.json; use fields or nested")
        return layout  # type: ignore[no-any-return]

    def routines(self) -> list[Routine]:
        folder = self.root / self.manifest.get("routines", "routines")
        if not folder.is_dir() and self.manifest.get("build"):  # a scenario generated at set-up time
            raise CallerError(f"scenario {self.name} is not built yet ({folder} is missing); run: {self.manifest['build']}")
        return [Routine.from_file(p) for p in sorted(folder.glob("*.json"))]

    def routine_map(self) -> dict[str, Routine]:
        return {r.id or r.name: r for r in self.routines()}

    def draft(self, routine_id: str) -> str | None:
        path = self.root / self.manifest.get("drafts", "drafts") / f"{routine_id}.md"
        return path.read_text(encoding="utf-8") if path.exists() else None

    def queries(self, split: str) -> list[dict[str, Any]]:
        return self._data(self.manifest.get("queries", "data/queries_{split}.jsonl").format(split=split))

    def extraction_examples(self) -> list[dict[str, Any]]:
        """Extra input-extraction training examples (``routine_id``, ``query``, every input in ``inputs``, null
        where the question does not write it): the files the manifest's ``extraction_examples`` lists, train
        data only (say, first-person questions that never write the asker's name)."""
        rows = []
        for relative in self.manifest.get("extraction_examples", []):
            for n, row in enumerate(self._data(relative), start=1):
                rows.append({"id": f"{Path(relative).stem}-{n}", **row})
        return rows

    def gold(self, split: str) -> list[dict[str, Any]]:
        return self._data(self.manifest.get("gold", "data/gold_{split}.jsonl").format(split=split))

    def _data(self, relative: str) -> list[dict[str, Any]]:
        try:
            return _read_jsonl(self.root / relative)
        except CallerError as exc:
            if self.manifest.get("build"):  # generated at set-up time: say how
                raise CallerError(f"{exc}; build the scenario first: {self.manifest['build']}") from None
            raise

    def servers(self, data_dir: str | Path) -> dict[str, Any]:
        """The mcpServers config to reach the scenario's tools, with placeholders filled."""
        subs = {"python": sys.executable, "data_dir": str(Path(data_dir).expanduser()), "scenario_dir": str(self.root)}
        return _fill(self.manifest["servers"], subs)
