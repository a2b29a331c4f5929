"""The shipped LLaMA-Factory training config fits what ``routine distill`` writes: the dataset it names is
the one distillation registers, the tool list is in the records once (not also mapped as a ``tools``
column), and HR training records fit its ``cutoff_len`` (so no call is cut off). LLaMA-Factory itself
is not installed here: ``benchmarks/llamafactory_check.py`` renders the records with it (docs/llamafactory)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from routines.backends.base import Message
from routines.scenario import Scenario
from trainer.distill import DistillOptions, distill
from trainer.sharegpt import load_dataset

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((ROOT / "docs" / "llamafactory" / "hr_lora_sft.yaml").read_text(encoding="utf-8"))
# LLaMA-Factory's qwen template writes "<tool_call>\n{...}\n</tool_call>", the executor no newlines: a few
# tokens more per call than the executor's own text (docs/llamafactory/README.md).
TEMPLATE_EXTRA_PER_CALL = 4


def test_config_names_the_distilled_dataset_and_the_papers_settings() -> None:
    assert CONFIG["dataset"] == DistillOptions().dataset_name("hr", "train") == "hr_train"
    assert CONFIG["template"] == "qwen" and CONFIG["stage"] == "sft" and CONFIG["finetuning_type"] == "lora"
    assert (CONFIG["lora_rank"], CONFIG["learning_rate"], CONFIG["num_train_epochs"]) == (8, 1.0e-4, 3.0)
    assert CONFIG["per_device_train_batch_size"] * CONFIG["gradient_accumulation_steps"] == 16


@pytest.mark.model
async def test_hr_training_records_fit_cutoff_len(tmp_path: Path) -> None:
    """Every third training query (all Routine variants; the whole set takes a minute here and is measured by
    benchmarks/llamafactory_check.py: 3,282 tokens at most, docs/llamafactory/README.md)."""
    from transformers import AutoTokenizer

    from routines.backends.transformers import chat_messages, default_model_path
    from scenarios.hr import build_database, create_server

    db = build_database(tmp_path / "hr.sqlite", seed=7)
    hr = Scenario.load("hr")
    queries = hr.queries("train")[::3]
    assert {q["variant"] for q in queries} == {q["variant"] for q in hr.queries("train")}
    report = await distill(hr, out_dir=tmp_path / "datasets", data_dir=tmp_path, queries=queries,
                           servers={"hr": create_server(db)})
    assert report.dropped == []
    entry = json.loads(report.dataset_info_path.read_text(encoding="utf-8"))[CONFIG["dataset"]]
    assert "tools" not in entry["columns"], "the tools are listed once, in the system prompt"

    gguf = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    longest = 0
    for conv in load_dataset(report.out_path):
        last = len(conv.calls) - 1
        messages = [*conv.messages(last), Message("assistant", conv.target(last))]
        text = tokenizer.apply_chat_template(chat_messages(messages), tokenize=False)
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"]) + TEMPLATE_EXTRA_PER_CALL * len(conv.calls)
        longest = max(longest, n)
    assert report.records == len(queries) and longest <= CONFIG["cutoff_len"], longest
