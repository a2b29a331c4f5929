"""``routine distill`` through the real entry point, with the scenario's server started over stdio."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import Cli
from trainer.sharegpt import load_dataset


@pytest.mark.model  # the report's token lengths load the embedded model's tokenizer
def test_distill_over_stdio(monkeypatch: pytest.MonkeyPatch, cli: Cli, toy_dir: Path,
                            tmp_path: Path) -> None:
    monkeypatch.setenv("ROUTINE_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "out"
    code, stdout, stderr = cli("distill", "--scenario", str(toy_dir), "--split", "train",
                                   "--teacher", "bound", "--out", str(out), "--limit", "4", "--no-routine")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("4 records from 4 queries (16 calls, teacher bound, ")
    # the lengths in the embedded model's tokens: no call over the 100-token limit, the prompt under both settings
    assert re.fullmatch(r"call tokens: median [\d.]+, p95 \d+, max \d+; 0 of 16 over 100", lines[1]), lines[1]
    assert lines[2].startswith("system prompt tokens (these records): median ")
    routine, every = (int(re.search(r"=\w+: (\d+)-(\d+)", line).group(2)) for line in lines[3:5])  # type: ignore[union-attr]
    assert lines[3].startswith("system prompt tokens per Routine, tools_in_prompt=routine: ")
    assert lines[4].startswith("system prompt tokens per Routine, tools_in_prompt=all: ") and routine < every
    assert lines[5:] == [f"dataset: {out / 'toy_train_noroutine.jsonl'}",
                         f"dataset_info: {out / 'dataset_info.json'} (dataset 'toy_train_noroutine')"]
    assert "[1/4] q-01: kept" in stderr and "[4/4] q-04: kept" in stderr
    conversations = load_dataset(out)
    assert len(conversations) == 4 and all("<routines>" not in c.system for c in conversations)


def test_bad_teacher_is_one_error_line(cli: Cli,
                                       toy_dir: Path, tmp_path: Path) -> None:
    code, _, stderr = cli("distill", "--scenario", str(toy_dir), "--out", str(tmp_path),
                              "--teacher", "oracle")
    assert code == 2 and "--teacher must be one of bound, local, openai" in stderr
    code, _, stderr = cli("distill", "--scenario", str(tmp_path / "nowhere"), "--out",
                              str(tmp_path))
    assert code == 2 and stderr.startswith("error: no scenario")
