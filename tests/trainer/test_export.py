"""``routine merge``: the shipped adapter merged into SmolLM2 and saved as one folder computes what the
embedded backend computes, with the Routine tags as single tokens; bad folders are refused, nothing
overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from routines.adapters import shipped_adapter
from routines.backends.base import Message
from routines.backends.chat import encode_prompt
from routines.errors import CallerError
from tests.conftest import Cli
from trainer.export import merge_adapter

ADAPTER = shipped_adapter("hr")


@pytest.mark.model
def test_the_merged_folder_loads_as_a_plain_model_and_computes_the_embedded_executors_logits(
    tmp_path: Path, cli: Cli
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from routines.backends.transformers import load_model

    assert ADAPTER is not None
    out = tmp_path / "merged"
    code, stdout, stderr = cli("merge", "--adapter", str(ADAPTER), "--out", str(out), "--dtype", "float32")
    assert code == 0, stderr
    assert '"<routines>": 49152' in stdout
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}

    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    # float32: a bfloat16 copy made with .to() (the backend's and the trainer's) also rounds RoPE's inv_freq,
    # which a model loaded in bfloat16 keeps in float32 (docs/training.md, "Serving the adapter")
    merged = AutoModelForCausalLM.from_pretrained(out, local_files_only=True, dtype=torch.float32).eval()
    embedded = load_model(None, ADAPTER, "float32")
    messages = [Message("system", "# Routine\n<routines>\nStep 1. Find the employee.\n</routines>"),
                Message("user", "Who is Ada Byron?")]
    ids = encode_prompt(tokenizer, messages)
    assert ids == encode_prompt(embedded.tokenizer, messages)
    assert tokenizer.convert_tokens_to_ids("<routines>") in ids  # one added token, not its pieces
    with torch.no_grad():
        want = embedded.model(torch.tensor([ids])).logits[0]
        got = merged(torch.tensor([ids])).logits[0]
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


def test_a_folder_that_is_not_empty_is_refused_and_kept(tmp_path: Path) -> None:
    assert ADAPTER is not None
    out = tmp_path / "merged"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(CallerError, match="not an empty folder"):
        merge_adapter(ADAPTER, out)
    assert (out / "notes.txt").read_text() == "mine"


def test_a_folder_without_an_adapter_is_refused(tmp_path: Path, cli: Cli) -> None:
    code, _, stderr = cli("merge", "--adapter", str(tmp_path), "--out", str(tmp_path / "m"))
    assert code == 2
    assert "no LoRA adapter" in stderr
    assert not (tmp_path / "m").exists()
