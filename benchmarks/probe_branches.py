"""Does an adapter read which branch to take? At every branch choice of distilled records
(:func:`trainer.decisions.decision_points`), compare the log-probability of the call's opening up to the tool
name for the branch taken and for the other branches; right when the branch taken scores highest.

    .venv/bin/python benchmarks/probe_branches.py --data /work/runs/hr-data:hr_train --adapter routines/adapters/hr \
        [--limit 40] [--train-steps 12 --lr 3e-4 [--contrast]] [--out docs/benchmarks/branch_probe.json]

Measured on training records: a model that picks one branch per Routine whatever the permission check said
has not learned the choice even where it was trained. ``--train-steps`` then trains on branch choices only
(the calls at a branch, loss on that call alone; each batch of 8 spread evenly over the branches' tools) from
the records left out of the measurement, and measures again every ``--every`` steps: whether the choice can
be learned quickly at all. With ``--contrast`` each step is 4 contrastive pairs instead: a choice and its twin
with the permission check's ``"allowed"`` flipped, loss on the call's opening up to the tool name, so that
the pair's shared text cancels and only the reading of the check is rewarded. The adapter on disk is not changed. About 6 s a measured choice and 110 s a
training step on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from routines.backends.base import Message
from routines.backends.chat import encode_prompt, encode_target
from trainer.checkpoints import load_initial_weights
from trainer.decisions import Decision, decision_points
from trainer.sequences import build_sequence
from trainer.sharegpt import Conversation, load_dataset
from trainer.train import TrainConfig, load_base, with_lora

Item = tuple[Conversation, Decision]


def load_model(adapter: str | None):
    import torch

    config = TrainConfig.from_preset("cpu")
    model, tokenizer = load_base(config)
    model = with_lora(model, tokenizer, config)
    for p in model.parameters():  # as routine train holds them: float32 adapters over bf16 weights
        if p.requires_grad:
            p.data = p.data.float()
    if adapter:
        load_initial_weights(model, Path(adapter))
    torch.manual_seed(0)
    return model, tokenizer


def opening_scores(model, tokenizer, conv: Conversation, decision: Decision) -> dict[str, float]:
    """Log-probability of the call's text up to and with each candidate's tool name (one prompt pass)."""
    import torch

    prompt = encode_prompt(tokenizer, conv.messages(decision.call))
    text = conv.target(decision.call)
    head = text[: text.index(decision.tool)]
    out: dict[str, float] = {}
    with torch.inference_mode():
        first = model(input_ids=torch.tensor([prompt]), use_cache=True, logits_to_keep=1)
        for tool in (decision.tool, *decision.alternatives):
            ids = tokenizer(head + tool, add_special_tokens=False)["input_ids"]
            rest = model(input_ids=torch.tensor([ids]), past_key_values=copy.deepcopy(first.past_key_values),
                         use_cache=True).logits[0, :-1]
            logits = torch.cat([first.logits[0, -1:], rest]).float()
            out[tool] = torch.log_softmax(logits, -1).gather(1, torch.tensor(ids)[:, None]).sum().item()
    return out


def measure(model, tokenizer, items: list[Item]) -> dict:
    model.eval()
    right, seen, started = Counter(), Counter(), time.perf_counter()
    for conv, decision in items:
        scores = opening_scores(model, tokenizer, conv, decision)
        seen[decision.tool] += 1
        right[decision.tool] += max(scores, key=scores.__getitem__) == decision.tool
    model.train()
    return {"right": sum(right.values()), "of": len(items),
            "by_tool": {t: f"{right[t]}/{seen[t]}" for t in sorted(seen)},
            "seconds": round(time.perf_counter() - started, 1)}


def optimize(model, optimizer, examples: list[tuple[list[int], list[int]]]) -> float:
    """One optimizer step over ``examples`` (token ids, the positions whose tokens carry the loss); returns the
    mean loss."""
    import torch

    total = 0.0
    for ids, at in examples:
        logits = model(input_ids=torch.tensor([ids]), logits_to_keep=torch.tensor([i - 1 for i in at]),
                       use_cache=False).logits[0]
        loss = torch.nn.functional.cross_entropy(logits.float(), torch.tensor([ids[i] for i in at]))
        (loss / len(examples)).backward()
        total += loss.item() / len(examples)
    optimizer.step()
    optimizer.zero_grad()
    return total


def train_step(model, tokenizer, optimizer, batch: list[Item]) -> float:
    """One step on the branch calls: the record up to and with the call, loss on that call alone."""
    examples = []
    for conv, decision in batch:
        turns = [(conv.messages(j), conv.target(j)) for j in range(decision.call + 1)]
        seq = build_sequence(tokenizer, conv.id, turns)
        n = len(encode_target(tokenizer, conv.target(decision.call)))
        examples.append((seq.input_ids, list(range(len(seq) - n, len(seq)))))
    return optimize(model, optimizer, examples)


_FIELD = re.compile(r'"allowed": (true|false)')


def reasons_by_side(items: list[Item]) -> dict[tuple[str, bool], list[str]]:
    """The check results' reasons, by (action, allowed), to give a flipped result a reason that fits it."""
    out: dict[tuple[str, bool], list[str]] = {}
    for conv, decision in items:
        result = _decisive_result(conv.messages(decision.call))
        if result is not None:
            value = result[1]
            out.setdefault((value.get("action", ""), bool(value["allowed"])), []).append(value.get("reason", ""))
    return out


def _decisive_result(messages: list[Message]) -> tuple[int, dict] | None:
    """The latest tool result that holds the ``allowed`` flag the branches' guards read, as (index, value)."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m.role == "tool" and _FIELD.search(m.content):
            body = m.content.partition(" = ")[2]
            try:
                return i, json.loads(body)
            except ValueError:
                return None
    return None


def twin(item: Item, reasons: dict, rng: random.Random) -> tuple[list[Message], str, str] | None:
    """The same prompt with the check's ``allowed`` flipped (and a reason of the other side), and the branch
    that must then be taken: a contrastive pair differs only in the check and the choice."""
    conv, decision = item
    messages = conv.messages(decision.call)
    found = _decisive_result(messages)
    if found is None or len(decision.alternatives) != 1:
        return None
    i, value = found
    flipped = not value["allowed"]
    pool = reasons.get((value.get("action", ""), flipped))
    value = {**value, "allowed": flipped, **({"reason": rng.choice(pool)} if pool and "reason" in value else {})}
    key = messages[i].content.partition(" = ")[0]
    messages = [*messages[:i], Message("tool", f"{key} = {json.dumps(value)}"), *messages[i + 1:]]
    return messages, conv.target(decision.call), decision.alternatives[0]


def choice_step(model, tokenizer, optimizer, pairs: list[tuple[list[Message], str, str]]) -> float:
    """One step on the choice alone: loss on the call's opening up to and with the tool name."""
    examples = []
    for messages, text, tool in pairs:
        head = text[: text.index('"name": "') + len('"name": "')]
        prompt = encode_prompt(tokenizer, messages)
        ids = prompt + tokenizer(head + tool, add_special_tokens=False)["input_ids"]
        examples.append((ids, list(range(len(prompt), len(ids)))))
    return optimize(model, optimizer, examples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="distilled records, DIR:name or a .jsonl file")
    ap.add_argument("--adapter", default=None, help="adapter folder (default: the base model)")
    ap.add_argument("--limit", type=int, default=40, help="branch choices measured (seeded sample)")
    ap.add_argument("--train-steps", type=int, default=0)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--every", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--contrast", action="store_true",
                    help="train on contrastive pairs: each choice and its twin with the check flipped (4 pairs a step)")
    ap.add_argument("--out", default="docs/benchmarks/branch_probe.json")
    args = ap.parse_args()

    import torch

    path, _, name = args.data.partition(":")
    items = [(c, d) for c in load_dataset(path, name or None) for d in decision_points(c)]
    if not items:
        raise SystemExit(f"{args.data}: no branch choices in these records")
    rng = random.Random(args.seed)
    rng.shuffle(items)
    held, rest = items[: args.limit], items[args.limit:]
    model, tokenizer = load_model(args.adapter)
    result = {"data": args.data, "adapter": args.adapter, "choices": len(items), "measured": len(held),
              "command": " ".join(sys.argv), "points": [{"step": 0, **measure(model, tokenizer, held)}]}
    print(json.dumps(result["points"][-1]), flush=True)
    if args.train_steps:
        sides: dict[str, list[Item]] = {}
        for item in rest:
            sides.setdefault(item[1].tool, []).append(item)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
        result["training"] = {"steps": args.train_steps, "lr": args.lr, "batch": 8, "losses": []}
        reasons = reasons_by_side(rest)  # (session 14's run drew them from all choices, the held-out ones too)
        result["training"]["contrast"] = args.contrast
        for step in range(1, args.train_steps + 1):
            tools = rng.sample(sorted(sides), min(8, len(sides)))
            batch = [rng.choice(sides[tools[i % len(tools)]]) for i in range(4 if args.contrast else 8)]
            if args.contrast:
                pairs = []
                for conv, decision in batch:
                    flipped = twin((conv, decision), reasons, rng)
                    if flipped is not None:
                        pairs += [(conv.messages(decision.call), conv.target(decision.call), decision.tool), flipped]
                loss = choice_step(model, tokenizer, optimizer, pairs)
            else:
                loss = train_step(model, tokenizer, optimizer, batch)
            result["training"]["losses"].append(round(loss, 4))
            if step % args.every == 0 or step == args.train_steps:
                result["points"].append({"step": step, **measure(model, tokenizer, held)})
                print(json.dumps(result["points"][-1]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
