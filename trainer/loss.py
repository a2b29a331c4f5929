"""The training loss: cross-entropy on the model's own turns (the calls), optionally weighing more the tokens
that spell each call's tool name.

Most call tokens are easy to copy (ids from the results, the user's id, the JSON around them); the few that
choose the tool carry the Routine's control flow (at a branch, which branch is taken) and are a small share of
the mean. ``name_weight`` > 1 gives them that many times the weight of another call token, with the mean
taken over the weights, so the loss stays on the same scale.
"""

from __future__ import annotations

from typing import Any

from trainer.sequences import IGNORE, TrainSequence


def call_loss(model: Any, ids: Any, seq: TrainSequence, name_weight: float = 1.0) -> Any:
    """Weighted mean cross-entropy of ``seq``'s call tokens. Logits are computed only at the positions that
    predict one (``logits_to_keep``): the vocabulary projection of every prompt position was a fifth of the
    work. No KV cache (``use_cache=False``): training never reads one, and it held every layer's keys and
    values."""
    import torch

    targets_at = [i for i, label in enumerate(seq.labels) if label != IGNORE and i > 0]
    keep = torch.tensor([i - 1 for i in targets_at], device=ids.device)
    logits = model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits[0]
    targets = torch.tensor([seq.labels[i] for i in targets_at], device=ids.device)
    losses = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    if name_weight == 1.0 or not seq.names:
        return losses.mean()
    names = set(seq.names)
    weights = torch.tensor([name_weight if i in names else 1.0 for i in targets_at], device=ids.device)
    return (losses * weights).sum() / weights.sum()
