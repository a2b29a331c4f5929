"""``routine routines negatives ...`` and ``routine routines tune`` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli

EXAMPLES = Path(__file__).resolve().parents[2] / "routines" / "examples"


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ROUTINE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_negatives_import_list_rm(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "neg.jsonl"
    path.write_text("".join(json.dumps({"question": q}) + "\n" for q in ("Tell me a joke", "Enrol me in the pension plan")),
                    encoding="utf-8")
    assert cli("routines", "negatives", "import", str(path)) == (0, "imported 2 negative question(s) from neg.jsonl\n", "")
    assert cli("routines", "negatives", "import", str(path), "--kind", "uncovered")[1] == \
        "imported 0 negative question(s) from neg.jsonl, 2 already stored, 2 given another kind\n"
    assert cli("routines", "negatives", "list")[1] == \
        "Tell me a joke\tuncovered\tneg.jsonl\nEnrol me in the pension plan\tuncovered\tneg.jsonl\n"
    listed = json.loads(cli("routines", "negatives", "list", "--json")[1])
    assert listed[0] == {"text": "Tell me a joke", "kind": "uncovered", "source": "neg.jsonl"}
    path.write_text(json.dumps({"question": "Tell me a joke", "kind": "unrelated"}) + "\n", encoding="utf-8")
    code, out, err = cli("routines", "negatives", "import", str(path), "--kind", "offtopic")
    assert code == 2 and out == "" and "kind 'offtopic' is not one of 'unrelated', 'uncovered'" in err
    assert cli("routines", "negatives", "import", str(path), "--kind", "uncovered")[1].endswith(
        "1 already stored, 1 given another kind\n")  # the line's own kind wins
    code, _, err = cli("routines", "negatives", "rm")
    assert code == 2 and "--source SOURCE or --all" in err
    assert cli("routines", "negatives", "rm", "--all")[1] == "deleted 2 negative question(s)\n"
    assert cli("routines", "negatives", "list")[2] == "no negative questions stored\n"


def test_tune_without_examples_is_one_clear_error(cli: Cli) -> None:
    pytest.importorskip("peft")
    cli("routines", "add", str(EXAMPLES / "salary.json"))
    code, out, err = cli("routines", "tune")
    assert code == 2 and out == ""
    assert err.startswith("error: tuning needs example questions: import some first")
    assert cli("routines", "tune", "--reset")[1] == "removed 0 tuned adapter(s)\n"
