"""Does LLaMA-Factory train on the text our executor sends? Renders a ``routine distill`` dataset through
LLaMA-Factory's own dataset registry, ShareGPT converter and chat template, and compares it, call by call,
with what the embedded executor sends the model (the SmolLM2 chat template over ``Conversation.messages``).

Run it in a separate virtual environment that has LLaMA-Factory (never the project's ``.venv``: LLaMA-Factory
pins older transformers, peft and accelerate), reusing the project's packages through a ``.pth`` file::

    python3.11 -m venv /tmp/lf-venv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/lf-venv/lib/python3.11/site-packages/zz_project.pth
    /tmp/lf-venv/bin/pip install --no-deps llamafactory==0.9.5
    /tmp/lf-venv/bin/pip install datasets==4.0.0 omegaconf
    routine distill --scenario hr --split train --teacher bound --out datasets/
    DISABLE_VERSION_CHECK=1 /tmp/lf-venv/bin/python benchmarks/llamafactory_check.py --dataset datasets \\
        --out docs/llamafactory/check.json

The template, dataset and cutoff_len come from the training config (``--config``, default
``docs/llamafactory/hr_lora_sft.yaml``), read by LLaMA-Factory's own argument parser. Prints a summary and
writes per-kind counts, token lengths and the first differences as JSON; exits 1 when a record is longer
than cutoff_len or differs in any other way than the one documented. What the
results mean is in ``docs/llamafactory/README.md``. ``torchaudio`` (imported by LLaMA-Factory's multimodal
plugin, unused for text) is stubbed when missing: no build of it matches the project's torch.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import sys
import time
import types
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from routines.backends.base import Message
from routines.backends.transformers import chat_messages, default_model_path
from trainer.sharegpt import load_dataset


def _lf_modules() -> Any:
    try:
        import torchaudio  # noqa: F401
    except ImportError:
        stub = types.ModuleType("torchaudio")
        stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)  # no distribution: "not available"
        sys.modules["torchaudio"] = stub
    from llamafactory.data import converter, parser, template
    from llamafactory.hparams import DataArguments

    return converter, parser, template, DataArguments


def _first_difference(a: str, b: str, context: int = 60) -> dict[str, Any]:
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return {"at": i, "llamafactory": a[max(0, i - context): i + context], "executor": b[max(0, i - context): i + context]}


def _without_call_newlines(text: str) -> str:
    """LLaMA-Factory's ``qwen`` tool format writes ``<tool_call>\\n{...}\\n</tool_call>``; ours has no newlines."""
    return text.replace("<tool_call>\n", "<tool_call>").replace("\n</tool_call>", "</tool_call>")


def check(dataset_dir: Path, name: str, template_name: str, tools_column: bool) -> dict[str, Any]:
    converter_mod, parser_mod, template_mod, DataArguments = _lf_modules()
    from transformers import AutoTokenizer

    gguf = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    data_args = DataArguments(template=template_name, dataset=name, dataset_dir=str(dataset_dir))
    attr = parser_mod.get_dataset_list([name], str(dataset_dir))[0]
    attr.tools = "tools" if tools_column else None  # both mappings, whatever dataset_info.json says
    convert = converter_mod.SharegptDatasetConverter(dataset_attr=attr, data_args=data_args)
    template = template_mod.get_template_and_fix_tokenizer(tokenizer, data_args)

    raw = [json.loads(line) for line in (dataset_dir / attr.dataset_name).read_text(encoding="utf-8").splitlines()]
    conversations = {c.id: c for c in load_dataset(dataset_dir, name)}
    kinds = {"identical": 0, "tool_call_newlines_only": 0, "other": 0}
    examples: dict[str, list[dict[str, Any]]] = {"tool_call_newlines_only": [], "other": []}
    lengths: list[int] = []
    for record in raw:
        conv = conversations[record["id"]]
        example = convert(record)
        messages = example["_prompt"] + example["_response"]
        pairs = template.encode_multiturn(tokenizer, messages, example["_system"], example["_tools"])
        lengths.append(sum(len(p) + len(r) for p, r in pairs))
        seen: list[int] = []
        for k, (prompt_ids, response_ids) in enumerate(pairs):
            seen += prompt_ids
            lf_prompt = tokenizer.decode(seen, skip_special_tokens=False)
            lf_target = tokenizer.decode(response_ids, skip_special_tokens=False)
            seen += response_ids
            ours_prompt = tokenizer.apply_chat_template(chat_messages(conv.messages(k)), tokenize=False,
                                                        add_generation_prompt=True)
            full = [*conv.messages(k), Message("assistant", conv.target(k))]
            ours_full = tokenizer.apply_chat_template(chat_messages(full), tokenize=False)
            ours_target = ours_full[len(ours_prompt):]
            lf, ours = lf_prompt + lf_target, ours_prompt + ours_target
            if lf == ours:
                kind = "identical"
            elif _without_call_newlines(lf) == _without_call_newlines(ours):
                kind = "tool_call_newlines_only"
            else:
                kind = "other"
            kinds[kind] += 1
            if kind != "identical" and len(examples[kind]) < 3:
                examples[kind].append({"record": record["id"], "call": k, **_first_difference(lf, ours)})
    calls = sum(kinds.values())
    return {
        "dataset": str(dataset_dir / attr.dataset_name), "records": len(raw), "calls": calls,
        "template": template_name, "tools_column": attr.tools is not None,
        "llamafactory": version("llamafactory"), "transformers": version("transformers"),
        "tokenizer": gguf.name, "per_call": kinds, "examples": examples,
        "tokens": {"max": max(lengths), "mean": round(sum(lengths) / len(lengths)), "min": min(lengths)},
    }


def parse_config(path: Path) -> dict[str, Any]:
    """The training config as LLaMA-Factory's own argument parser reads it (on a CPU: ``use_cpu``)."""
    import yaml

    _lf_modules()
    from llamafactory.hparams import get_train_args

    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    _, data_args, _, finetuning_args, _ = get_train_args({**config, "use_cpu": True})
    return {"template": data_args.template, "cutoff_len": data_args.cutoff_len, "dataset": data_args.dataset,
            "lora_rank": finetuning_args.lora_rank}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, required=True, help="a `routine distill --out` folder")
    ap.add_argument("--config", type=Path, default=ROOT / "docs" / "llamafactory" / "hr_lora_sft.yaml",
                    help="the LLaMA-Factory training config (its template, dataset and cutoff_len are checked)")
    ap.add_argument("--out", type=Path, default=None, help="write the results here as JSON")
    args = ap.parse_args()
    start = time.perf_counter()
    config = parse_config(args.config)
    name = config["dataset"][0]
    # As routine distill writes dataset_info.json (the tools listed once, in system), and with the tools column
    # mapped too (LLaMA-Factory then appends its own rendering of the list to the system text).
    results: dict[str, Any] = {"config": {"path": str(args.config.relative_to(ROOT)), **config}}
    for label, mapped in (("tools_column_unmapped", False), ("tools_column_mapped", True)):
        r = results[label] = check(args.dataset, name, config["template"], mapped)
        r["fits_cutoff_len"] = r["tokens"]["max"] <= config["cutoff_len"]
        print(f"{label}: {r['records']} records, {r['calls']} calls: {r['per_call']}; tokens per record max "
              f"{r['tokens']['max']}, mean {r['tokens']['mean']}; every record within cutoff_len "
              f"{config['cutoff_len']}: {r['fits_cutoff_len']}")
        for kind, shown in r["examples"].items():
            for e in shown[:1]:
                print(f"  {kind}, e.g. {e['record']} call {e['call']} at char {e['at']}:\n"
                      f"    llamafactory: {e['llamafactory']!r}\n    executor:     {e['executor']!r}")
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    ok = results["tools_column_unmapped"]
    if not ok["fits_cutoff_len"] or ok["per_call"]["other"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
