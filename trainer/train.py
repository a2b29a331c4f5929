"""``routine train``: LoRA fine-tuning of the executor on Routine-distilled data (paper 4.3), top to bottom.

    routine train --data DIR [--data DIR2] --preset cpu --out adapters/hr [--extraction hr] [--resume]

What it trains on is what the executor sends: every record is rendered by the embedded backend's own chat
function (:mod:`trainer.sequences`), one record is one sequence holding all its calls, and the loss is on
the model's calls only. ``<routines>``/``</routines>`` become special tokens (paper 4.3) whose embedding rows
are trained (peft ``trainable_token_indices``) and saved alone, not the whole embedding matrix.

It runs the same on this CPU (bf16 weights: the CPU multiplies bf16 natively) and on GPUs under
``accelerate launch`` or ``torchrun`` (DDP: each process takes every n-th sequence). A checkpoint (the
adapter, optimizer, schedule and position) is written every ``save_every`` optimizer steps; ``--resume``
continues from it, so a run longer than a session finishes in the next. Next to the adapter: the config,
``metrics.jsonl`` (one line per optimizer step) and ``loss.png``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Any

from routines.errors import CallerError
from trainer.allocator import allocator_advice
from trainer.augment import augment, scenario_templates
from trainer.checkpoints import (
    CHECKPOINT,
    initial_adapter,
    load_initial_weights,
    resume_state,
    save_checkpoint,
)
from trainer.entities import entity_variants, value_pools
from trainer.loss import call_loss
from trainer.metrics import drop_after, plot_loss, progress_bar
from trainer.sequences import TrainSequence, conversation_sequence, extraction_sequences
from trainer.sharegpt import load_dataset

log = logging.getLogger(__name__)

PRESETS_DIR = Path(__file__).parent / "presets"
SPECIAL_TOKENS = ("<routines>", "</routines>")
"""The prompt's Routine tags (paper 4.3); the ``<variables>`` tags are gone: keys appear in the turns."""


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as ``train_config.json`` next to the adapter."""

    data: list[str] = field(default_factory=list)
    """Distilled datasets: ``.jsonl`` files or folders with a ``dataset_info.json`` (``DIR:name`` picks one)."""
    out: str = "adapter"
    base_model: str | None = None
    """A local Hugging Face model folder or ``.gguf`` file; default the embedded SmolLM2-135M."""
    init_adapter: str | None = None
    """An adapter folder (``routine train --out``) whose weights the run starts from, with a new optimizer and
    schedule: the paper's two stages (figure 5), a common Routine-following adapter, then a scenario's data."""
    extraction: str | None = None
    """A scenario whose train queries become input-extraction examples (hybrid mode reads inputs with it)."""
    extraction_split: str = "train"
    extraction_variants: int = 0
    """Extra extraction examples per query: reworded (the scenario's templates) with made-up names
    (:mod:`trainer.entities`), so that reading a name never seen in training is what is learned."""
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: str = "all-linear"
    special_tokens: bool = True
    lr: float = 1e-4
    warmup_ratio: float = 0.1
    batch_size: int = 16
    """Sequences per optimizer step, over all processes (gradient accumulation makes up the rest)."""
    epochs: float = 3
    max_steps: int | None = None
    max_len: int = 8192
    dtype: str = "bfloat16"
    weight_decay: float = 0.0
    name_weight: float = 1.0
    """Loss weight of the tokens that spell each call's tool name against another call token (:mod:`trainer.loss`)."""
    save_every: int = 10
    seed: int = 0
    threads: int | None = None
    limit: int | None = None
    """Use only the first N sequences (smoke tests)."""
    description: str = ""

    @classmethod
    def from_preset(cls, preset: str | Path | None, **overrides: Any) -> TrainConfig:
        values: dict[str, Any] = {}
        if preset:
            path = Path(preset)
            if not path.suffix:
                path = PRESETS_DIR / f"{preset}.json"
            if not path.is_file():
                known = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.json")))
                raise CallerError(f"no preset {preset!r}; use one of {known} or a JSON file")
            values = json.loads(path.read_text(encoding="utf-8"))
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise CallerError(f"preset {preset}: unknown setting(s) {', '.join(unknown)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# ---- data ---------------------------------------------------------------------------------------------


def load_sequences(config: TrainConfig, tokenizer: Any) -> list[TrainSequence]:
    """Every training sequence: the records of each dataset, then the extraction examples."""
    sequences: list[TrainSequence] = []
    for spec in config.data:
        path, _, name = spec.partition(":") if ":" in spec and not Path(spec).exists() else (spec, "", "")
        for conv in load_dataset(path, name or None):
            sequences.append(conversation_sequence(tokenizer, conv))
    if config.extraction:
        from routines.scenario import Scenario

        scenario = Scenario.load(config.extraction)
        today = date.fromisoformat(scenario.today) if scenario.today else None
        queries = extraction_queries(scenario, config.extraction_split, config.extraction_variants, config.seed)
        sequences += extraction_sequences(tokenizer, queries, scenario.routine_map(), today)
    if not sequences:
        raise CallerError("no training data: pass --data with a distilled dataset (routine distill) or --extraction")
    too_long = [s.id for s in sequences if len(s) > config.max_len]
    if too_long:
        log.warning("%d sequences longer than %d tokens are left out (first: %s)", len(too_long), config.max_len, too_long[0])
        sequences = [s for s in sequences if len(s) <= config.max_len]
    return sequences[: config.limit] if config.limit else sequences


def extraction_queries(scenario: Any, split: str, variants: int, seed: int) -> list[dict[str, Any]]:
    """The split's queries, then ``variants`` copies of each that writes a multi-word input value: reworded
    where the scenario has other phrasings, with made-up values in place of the written ones; for the train
    split, the scenario's extra extraction examples last (:meth:`routines.scenario.Scenario.extraction_examples`)."""
    queries = list(scenario.queries(split))
    extra_examples = scenario.extraction_examples() if split == "train" else []
    if variants <= 0:
        return queries + extra_examples
    reworded, _ = augment(queries, variants, seed=seed, templates=scenario_templates(scenario))
    by_origin: dict[str, list[dict[str, Any]]] = {}
    for q in reworded:
        by_origin.setdefault(str(q["augmented_from"]), []).append(q)
    pools = value_pools(queries)
    extra: list[dict[str, Any]] = []
    for q in queries:
        bases = (by_origin.get(str(q.get("id")), []) + [q] * variants)[:variants]  # rewordings first
        for n, base in enumerate(bases, start=1):
            for copy in entity_variants([base], 1, seed=seed + n - 1, pools=pools):
                extra.append({**copy, "id": f"{q.get('id')}~x{n}", "augmented_from": q.get("id")})
    return queries + extra + extra_examples


def data_digest(sequences: list[TrainSequence]) -> str:
    """What the run trains on, in order: a hash of each sequence's id and token ids (a resumed run compares it)."""
    h = hashlib.sha256()
    for seq in sequences:
        h.update(f"{seq.id}\t{len(seq)}\t".encode())
        h.update(",".join(map(str, seq.input_ids)).encode())
    return h.hexdigest()[:16]


def epoch_order(n: int, epoch: int, seed: int) -> list[int]:
    order = list(range(n))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


def get_lr(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    warmup = max(1, round(config.warmup_ratio * total)) if config.warmup_ratio > 0 else 0
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# ---- model --------------------------------------------------------------------------------------------


def load_base(config: TrainConfig) -> tuple[Any, Any]:
    """The base model (float32) and tokenizer, with the special tokens added and their rows initialised to
    the mean embedding of the text they replace."""
    import torch

    from routines.backends.transformers import _from_pretrained, default_model_path

    tokenizer, model = _from_pretrained(Path(config.base_model) if config.base_model else default_model_path())
    if config.special_tokens:
        pieces = {t: tokenizer(t, add_special_tokens=False)["input_ids"] for t in SPECIAL_TOKENS}
        tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        emb = model.get_input_embeddings().weight
        with torch.no_grad():
            for token, ids in pieces.items():
                emb[tokenizer.convert_tokens_to_ids(token)] = emb[ids].mean(dim=0)
    return model, tokenizer


def with_lora(model: Any, tokenizer: Any, config: TrainConfig) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model

    token_ids = [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] if config.special_tokens else None
    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=config.target_modules, task_type="CAUSAL_LM",
        trainable_token_indices={"embed_tokens": token_ids} if token_ids else None,
    )
    model = model.to(getattr(torch, config.dtype))
    return get_peft_model(model, lora, autocast_adapter_dtype=True)


# ---- the loop -----------------------------------------------------------------------------------------


RESUME_OVERRIDES = ("max_steps", "save_every", "threads")
"""What a resumed run may change: its length (the schedule follows the new total), checkpointing and threads."""


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True,
          overrides: dict[str, Any] | None = None, keep: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train an adapter into ``config.out``; returns the run's summary (also in ``summary.json``). A resumed
    run takes its config from the checkpoint, with ``overrides`` (:data:`RESUME_OVERRIDES` only) on top.
    ``keep`` (tests): receives the trained peft model under ``"model"``."""
    import torch
    from accelerate import Accelerator

    out = Path(config.out)
    ckpt = out / CHECKPOINT
    if resume and (ckpt / "train_config.json").is_file():
        saved = json.loads((ckpt / "train_config.json").read_text(encoding="utf-8"))
        refused = sorted(set(overrides or {}) - set(RESUME_OVERRIDES))
        if refused:
            raise CallerError(f"--resume continues the saved run; it can change only {', '.join(RESUME_OVERRIDES)}, "
                              f"not {', '.join(refused)}: start a new run (another --out) for that")
        config = TrainConfig(**{**saved, **(overrides or {}), "out": config.out})
    elif resume:
        raise CallerError(f"--resume: no checkpoint in {ckpt}; start without --resume")
    initial = initial_adapter(config) if config.init_adapter and not resume else None
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    accelerator = Accelerator()
    world, rank = accelerator.num_processes, accelerator.process_index
    accum = max(1, config.batch_size // world)
    if accelerator.is_main_process and (advice := allocator_advice(os.environ, accelerator.device.type)):
        log.info(advice)

    model, tokenizer = load_base(config)
    sequences = load_sequences(config, tokenizer)
    model = with_lora(model, tokenizer, config)
    for p in model.parameters():  # adapters train in float32 over bf16 base weights
        if p.requires_grad:
            p.data = p.data.float()
    if initial is not None:
        load_initial_weights(model, initial)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = math.ceil(len(sequences) / (accum * world))
    total = config.max_steps or max(1, math.ceil(per_epoch * config.epochs))
    step, tokens_done, started_s = 0, 0, 0.0
    digest = data_digest(sequences)
    if resume:
        state = resume_state(model, optimizer, out)
        step, tokens_done, started_s = state["step"], state["tokens"], state["seconds"]
        if state.get("data") not in (None, digest):
            log.warning("the training data changed since the checkpoint (%s sequences then, %d now): the run goes "
                        "on over the new data, in another order", state.get("sequences", "?"), len(sequences))
        if total < step:
            raise CallerError(f"--max-steps {total} is below the {step} steps this run has done; "
                              f"give at least {step}")
        log.info("resuming at step %d of %d", step, total)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()

    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(asdict(config), indent=2) + "\n", encoding="utf-8")
    metrics_path = out / "metrics.jsonl"
    if resume and accelerator.is_main_process and (dropped := drop_after(metrics_path, step)):
        log.warning("dropped %d rows of metrics.jsonl past the checkpoint's step %d: those steps run again", dropped, step)
    bar = progress_bar(total, step, progress and accelerator.is_main_process)
    clock = time.perf_counter()
    session_tokens = 0
    device = accelerator.device
    while step < total:
        epoch, offset = divmod(step * accum * world, max(1, len(sequences)))
        order = epoch_order(len(sequences), epoch, config.seed)
        batch = [sequences[order[(offset + i) % len(sequences)]] for i in range(rank, accum * world, world)]
        for g in optimizer.param_groups:
            g["lr"] = get_lr(step, total, config)
        losses, tokens = [], 0
        for i, seq in enumerate(batch):
            ids = torch.tensor([seq.input_ids], device=device)
            sync = i == len(batch) - 1
            ctx = accelerator.no_sync(model) if (world > 1 and not sync) else nullcontext()
            with ctx:
                loss = call_loss(model, ids, seq, config.name_weight) / len(batch)
                accelerator.backward(loss)
            losses.append(loss.item() * len(batch))
            tokens += len(seq)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, 1.0))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens_done += tokens * world
        session_tokens += tokens * world
        elapsed = time.perf_counter() - clock
        row = {"step": step, "epoch": round(step * accum * world / len(sequences), 3),
               "loss": round(sum(losses) / len(losses), 5), "lr": optimizer.param_groups[0]["lr"],
               "grad_norm": round(grad_norm, 4), "tokens": tokens_done,
               "tokens_per_s": round(session_tokens / elapsed, 1) if elapsed else None,
               "seconds": round(started_s + elapsed, 1)}
        if accelerator.is_main_process:
            with metrics_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            bar.set_postfix(loss=f"{row['loss']:.4f}", tok_s=row["tokens_per_s"])
            bar.update(1)
            if step % config.save_every == 0 or step == total:
                save_checkpoint(accelerator, model, optimizer, tokenizer, config, out, step, tokens_done,
                                started_s + elapsed, {"data": digest, "sequences": len(sequences)})
    bar.close()
    if keep is not None:
        keep["model"] = accelerator.unwrap_model(model)
    summary = {"steps": step, "sequences": len(sequences), "tokens": tokens_done,
               "seconds": round(started_s + time.perf_counter() - clock, 1), "out": str(out)}
    if accelerator.is_main_process:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        plot_loss(metrics_path, out / "loss.png")
    return summary
