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


def test_a_labelled_set_is_imported_as_examples_and_negatives(cli: Cli, tmp_path: Path) -> None:
    cli("routines", "add", str(EXAMPLES / "salary.json"))
    path = tmp_path / "used.jsonl"
    path.write_text(json.dumps({"query": "What is Ana paid?", "routine_id": "example.salary", "kind": "in_scope"}) + "\n"
                    + json.dumps({"query": "Enrol me in the pension plan", "routine_id": None, "kind": "uncovered"}) + "\n",
                    encoding="utf-8")
    code, _, err = cli("routines", "examples", "import", str(path))
    assert code == 2 and "line 2: an example needs 'routine_id'" in err  # without the flag: examples only
    assert cli("routines", "examples", "import", str(path), "--with-negatives")[1] == \
        "imported 1 example question(s) from used.jsonl\nimported 1 negative question(s)\n"
    assert cli("routines", "negatives", "list")[1] == "Enrol me in the pension plan\tuncovered\tused.jsonl\n"


def test_tune_without_examples_is_one_clear_error(cli: Cli) -> None:
    pytest.importorskip("peft")
    cli("routines", "add", str(EXAMPLES / "salary.json"))
    code, out, err = cli("routines", "tune")
    assert code == 2 and out == ""
    assert err.startswith("error: tuning needs example questions: import some first")
    assert cli("routines", "tune", "--reset")[1] == "removed 0 tuned adapter(s)\n"
