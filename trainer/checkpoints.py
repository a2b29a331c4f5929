"""A run's checkpoints: the adapter saved in ``--out`` (usable as it is) and, in ``--out/checkpoint/``, what
``--resume`` needs (the optimizer's ``state.pt``, ``position.json``, ``train_config.json``); and the weights
of another adapter a run starts from (``--init-adapter``)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routines.errors import CallerError

if TYPE_CHECKING:
    from trainer.train import TrainConfig

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"
POSITION = "position.json"
"""Where a run stands (step, tokens, seconds, data digest), beside the optimizer's ``state.pt``."""


def initial_adapter(config: TrainConfig) -> Path:
    """The ``init_adapter`` folder, checked against this run's LoRA shape before any model loads."""
    path = Path(str(config.init_adapter))
    saved_path = path / "adapter_config.json"
    if not saved_path.is_file():
        raise CallerError(f"--init-adapter {path}: no adapter_config.json there; give a folder written by routine train")
    saved = json.loads(saved_path.read_text(encoding="utf-8"))
    differ = [f"{what} {saved.get(key)} (this run: {ours})" for what, key, ours in
              (("rank (--lora-r)", "r", config.lora_r), ("lora_alpha", "lora_alpha", config.lora_alpha))
              if saved.get(key) != ours]
    if bool(saved.get("trainable_token_indices")) != config.special_tokens:
        differ.append("special tokens " + ("trained" if saved.get("trainable_token_indices") else "absent")
                      + f" (this run: {'--special-tokens' if config.special_tokens else '--no-special-tokens'})")
    if differ:
        raise CallerError(f"--init-adapter {path} has another shape: {'; '.join(differ)}; train with its settings")
    return path


def load_initial_weights(model: Any, path: Path) -> None:
    """Copy an adapter's LoRA and token weights into the fresh peft model (all of them, or an error)."""
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    weights = load_peft_weights(str(path), device="cpu")
    result = set_peft_model_state_dict(model, weights)
    ours = {k for k, v in model.named_parameters() if v.requires_grad}
    missing = [k for k in result.missing_keys if k in ours]
    if result.unexpected_keys or missing:
        raise CallerError(f"the adapter in {path} does not fit this model: {len(result.unexpected_keys)} weights "
                          f"it has are not in the model, {len(missing)} trained weights are not in it "
                          f"(first: {(result.unexpected_keys or missing)[0]})")
    log.info("loaded the adapter in %s (%d tensors)", path, len(weights))


def trainable_state(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def save_checkpoint(accelerator: Any, model: Any, optimizer: Any, tokenizer: Any, config: TrainConfig, out: Path,
                    step: int, tokens: int, seconds: float, data: dict[str, Any]) -> None:
    """The adapter (usable as it is) and, beside it, the state to resume from."""
    import torch

    unwrapped = accelerator.unwrap_model(model)
    unwrapped.save_pretrained(out)
    if config.special_tokens:
        tokenizer.save_pretrained(out)
    ckpt = out / CHECKPOINT
    ckpt.mkdir(exist_ok=True)
    position = {"step": step, "tokens": tokens, "seconds": seconds, **data}
    tmp = ckpt / "state.pt.tmp"
    torch.save({"trainable": trainable_state(unwrapped), "optimizer": optimizer.state_dict(), **position}, tmp)
    tmp.replace(ckpt / "state.pt")
    (ckpt / POSITION).write_text(json.dumps(position, indent=2) + "\n", encoding="utf-8")
    (ckpt / "train_config.json").write_text(json.dumps(asdict(config), indent=2) + "\n", encoding="utf-8")


def resume_state(model: Any, optimizer: Any, out: Path) -> dict[str, Any]:
    """Load the checkpoint in ``out`` into ``model`` and ``optimizer``; returns its position (step, tokens,
    seconds, data digest). Without ``state.pt`` (the optimizer's state, 3x the adapter: left out where the run
    is carried in git), the run goes on from the adapter saved in ``out`` and ``position.json``, with fresh
    AdamW moments: the same data order and schedule, not the same updates."""
    import torch

    ckpt = out / CHECKPOINT
    if (ckpt / "state.pt").is_file():
        state = torch.load(ckpt / "state.pt", weights_only=False)
        model.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        return state
    if not (ckpt / POSITION).is_file():
        raise CallerError(f"--resume: {ckpt} has neither state.pt nor {POSITION}; start without --resume")
    load_initial_weights(model, out)
    position = json.loads((ckpt / POSITION).read_text(encoding="utf-8"))
    log.warning("no optimizer state in %s: resuming at step %s from the adapter saved in %s, with fresh AdamW "
                "moments", ckpt, position["step"], out)
    return position
