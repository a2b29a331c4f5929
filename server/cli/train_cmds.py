"""``routine train``: LoRA fine-tuning of the executor on distilled datasets (:mod:`trainer.train`); ``routine
merge``: an adapter merged into its base model (:mod:`trainer.export`).

    routine train --data DATASET_DIR --preset cpu --out adapters/hr [--extraction hr [--extraction-variants 1]] [--resume]
    routine merge --adapter adapters/hr --out merged/hr        # one folder for servers without peft token rows

On GPUs the same command runs under ``accelerate launch -m server train ...`` or ``torchrun``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        out: Annotated[Path, typer.Option("--out", "-o", help="Adapter folder (also holds checkpoints and metrics).")],
        data: Annotated[list[str] | None, typer.Option(
            help="A distilled dataset: .jsonl, or a folder with dataset_info.json (FOLDER:name picks one). Repeat "
                 "for several.")] = None,
        preset: Annotated[str, typer.Option(help="paper, cpu, tiny, or a JSON file of settings.")] = "cpu",
        extraction: Annotated[str | None, typer.Option(
            help="A scenario whose train queries become input-extraction examples (e.g. hr).")] = None,
        extraction_variants: Annotated[int | None, typer.Option(
            help="Extra extraction examples per query: reworded, with made-up names.")] = None,
        base_model: Annotated[str | None, typer.Option(help="Base model folder or .gguf (default: SmolLM2-135M).")] = None,
        init_adapter: Annotated[str | None, typer.Option(
            help="Start from this adapter's weights (e.g. a common Routine-following adapter), with a new optimizer "
                 "and schedule.")] = None,
        epochs: Annotated[float | None, typer.Option(help="Override the preset's epochs.")] = None,
        lr: Annotated[float | None, typer.Option(help="Override the preset's peak learning rate.")] = None,
        batch_size: Annotated[int | None, typer.Option(help="Override the effective batch (sequences per step).")] = None,
        lora_r: Annotated[int | None, typer.Option(help="Override the LoRA rank.")] = None,
        name_weight: Annotated[float | None, typer.Option(
            help="Loss weight of the tokens that spell each call's tool name (at a branch, the branch taken) "
                 "against another call token; 1 weighs them alike (5 measured worse on HR: docs/training.md).")] = None,
        max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimizer steps.")] = None,
        max_len: Annotated[int | None, typer.Option(
            help="Leave out sequences longer than this many tokens (default 8192, the model's context).")] = None,
        save_every: Annotated[int | None, typer.Option(help="Checkpoint every N optimizer steps.")] = None,
        threads: Annotated[int | None, typer.Option(help="Torch CPU threads.")] = None,
        special_tokens: Annotated[bool | None, typer.Option(
            "--special-tokens/--no-special-tokens", help="<routines> tags as trained special tokens (paper 4.3).")] = None,
        resume: Annotated[bool, typer.Option(
            help="Continue from the checkpoint in --out with its saved settings (--max-steps, --save-every and "
                 "--threads may change).")] = False,
        progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    ) -> None:
        """Train a LoRA adapter for the executor on Routine-distilled data."""
        from trainer.train import TrainConfig
        from trainer.train import train as run_training

        logging.getLogger("trainer").setLevel(logging.INFO)
        given = {"data": list(data or []) or None, "extraction": extraction, "extraction_variants": extraction_variants,
                 "base_model": base_model, "init_adapter": init_adapter, "epochs": epochs, "lr": lr,
                 "batch_size": batch_size, "lora_r": lora_r, "name_weight": name_weight, "max_steps": max_steps,
                 "max_len": max_len, "save_every": save_every, "threads": threads, "special_tokens": special_tokens}
        given = {k: v for k, v in given.items() if v is not None}
        if resume:  # the checkpoint's settings hold; what was given on top is checked by train()
            summary = run_training(TrainConfig(out=str(out)), resume=True, progress=progress, overrides=given)
        else:
            summary = run_training(TrainConfig.from_preset(preset, out=str(out), **given), progress=progress)
        typer.echo(json.dumps(summary))

    @app.command()
    def merge(
        adapter: Annotated[Path, typer.Option(help="The adapter folder (`routine train --out`).")],
        out: Annotated[Path, typer.Option("--out", "-o", help="A new folder for the merged model and tokenizer.")],
        base_model: Annotated[str | None, typer.Option(help="Base model folder or .gguf (default: SmolLM2-135M).")] = None,
        dtype: Annotated[str, typer.Option(help="Weights of the saved model: bfloat16 or float32.")] = "bfloat16",
    ) -> None:
        """Merge an adapter into its base model and save one Hugging Face folder (for vLLM: `vllm serve OUT`;
        vLLM's LoRA loader leaves out the trained rows of the <routines> tokens)."""
        from trainer.export import merge_adapter

        typer.echo(json.dumps(merge_adapter(adapter, out, base_model=base_model, dtype=dtype)))
