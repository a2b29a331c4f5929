"""Gold trajectories: every query run through its bound Routine against the live HR server by the engine
itself (``scenarios.bound``: the executor in ``bound`` mode), and the files.

Files under ``scenarios/hr/data/``: ``queries_{train,test}.jsonl`` (query records) and
``gold_{train,test}.jsonl`` (the query record plus ``calls`` and ``answer``), gzipped when the gold files
together would exceed 20 MB. Regenerating with the same seed writes identical files.
"""

from __future__ import annotations

import gzip
import json
import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio

from routines.flatten import taken_variant
from routines.hub import ToolHub
from routines.model import Routine
from scenarios.bound import GoldRunError, bound_executor, run_bound
from scenarios.hr.db import build_database
from scenarios.hr.queries import DATA_DIR, SPLITS, generate_queries
from scenarios.hr.server import FREE_TEXT_PARAMS, create_server

logger = logging.getLogger(__name__)

ROUTINES_DIR = Path(__file__).parent / "routines"
GZIP_ABOVE = 20 * 1024 * 1024


def load_routines() -> list[Routine]:
    """The seven expert Routines, sorted by id."""
    return sorted((Routine.from_file(p) for p in ROUTINES_DIR.glob("*.json")), key=lambda r: r.id or "")


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=False, separators=(",", ":"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a ``.jsonl`` file, or of ``<path>.gz`` when only the gzipped file exists."""
    if path.exists():
        text = path.read_text(encoding="utf-8")
    elif (gz := path.with_name(path.name + ".gz")).exists():
        text = gzip.decompress(gz.read_bytes()).decode("utf-8")
    else:
        raise FileNotFoundError(f"{path} is missing; regenerate with `python -m scenarios.hr.queries --write`")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def gold_records(db_path: str | Path, queries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run every query's bound Routine; the variant taken must be the query's variant. Each gold call keeps
    its step, the arguments as the tool got them, the result and its free-text parameters."""
    routines = {r.id: r for r in load_routines()}
    out = []
    async with ToolHub.from_config({"mcpServers": {"hr": create_server(db_path)}}) as hub:
        executor = bound_executor(hub)
        for query in queries:
            routine = routines[query["routine_id"]]
            result = await run_bound(executor, routine, query, query["id"])
            variant = taken_variant(routine, [c.step for c in result.calls])
            if variant != query["variant"]:
                raise GoldRunError(f"{query['id']}: took {variant}, expected {query['variant']}")
            calls = [{"step": c.step, "name": c.tool, "arguments": c.resolved_arguments, "result": c.result,
                      "free_text": [p for p in FREE_TEXT_PARAMS.get(c.tool, ()) if p in (c.resolved_arguments or {})]}
                     for c in result.calls]
            out.append({**query, "calls": calls, "answer": result.answer or ""})
    return out


def write_all(out_dir: Path = DATA_DIR, seed: int = 7, db_path: Path | None = None) -> dict[str, Any]:
    """Build a fresh database with ``seed`` (unless ``db_path`` is given), generate queries, run the gold
    trajectories and write the four files. Returns counts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        db = db_path or build_database(Path(tmp) / "hr.sqlite", seed=seed)
        queries = generate_queries(db, seed=seed)
        gold = {split: anyio.run(gold_records, db, queries[split]) for split in SPLITS}
    texts = {split: "".join(_dumps(r) + "\n" for r in gold[split]) for split in SPLITS}
    compress = sum(len(t.encode("utf-8")) for t in texts.values()) > GZIP_ABOVE
    for split in SPLITS:
        (out_dir / f"queries_{split}.jsonl").write_text("".join(_dumps(q) + "\n" for q in queries[split]),
                                                       encoding="utf-8")
        plain, packed = out_dir / f"gold_{split}.jsonl", out_dir / f"gold_{split}.jsonl.gz"
        if compress:
            packed.write_bytes(gzip.compress(texts[split].encode("utf-8"), mtime=0))
            plain.unlink(missing_ok=True)
        else:
            plain.write_text(texts[split], encoding="utf-8")
            packed.unlink(missing_ok=True)
    return {split: {"queries": len(queries[split]), "steps": sum(len(g["calls"]) for g in gold[split])}
            for split in SPLITS} | {"gzipped": compress}
