"""Diagnostic: can the adapter learn to read check_permission's "allowed" at a branch start?
Measures the branch choice (log-prob of the right tool name vs the other branch's) on held-out train
records, trains N steps on branch-start calls only (balanced batches), measures again."""
import json, random, sys, time, collections
from pathlib import Path
import torch
sys.path.insert(0, "/work/main")
from trainer.train import TrainConfig, load_base, with_lora, load_initial_weights
from trainer.sharegpt import load_dataset
from trainer.sequences import build_sequence, IGNORE
from routines.backends.chat import encode_prompt, encode_target

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
lr = float(sys.argv[2]) if len(sys.argv) > 2 else 1e-4
torch.manual_seed(0); torch.set_num_threads(2)
cfg = TrainConfig.from_preset("cpu")
model, tok = load_base(cfg)
model = with_lora(model, tok, cfg)
for p in model.parameters():
    if p.requires_grad: p.data = p.data.float()
load_initial_weights(model, Path("/work/main/routines/adapters/hr"))

convs = load_dataset("/work/runs/hr-data", "hr_train")
follow = collections.defaultdict(set)
items = []  # (conv, k, tool, allowed)
for c in convs:
    for k, call in enumerate(c.calls[:-1]):
        if call.name == "check_permission":
            allowed = '"allowed": true' in c.observations[k]
            nxt = c.calls[k + 1].name
            follow[c.extra.get("routine_id") or c.system[-300:]].add(nxt)
            items.append((c, k + 1, nxt, allowed))
other = {}
for tools in follow.values():
    t = sorted(tools)
    if len(t) == 2: other[t[0]] = t[1]; other[t[1]] = t[0]
print("branch tools:", other, "items", len(items), collections.Counter((i[2], i[3]) for i in items))
rng = random.Random(0); rng.shuffle(items)
held = items[:40]; train = items[40:]

def scores(conv, k, tools):
    import copy
    prompt = encode_prompt(tok, conv.messages(k))
    text = conv.target(k)
    name = conv.calls[k].name
    head = text[:text.index(name)]
    out = []
    with torch.inference_mode():
        res = model(input_ids=torch.tensor([prompt]), use_cache=True, logits_to_keep=1)
        for tool in tools:
            tgt = tok(head + tool, add_special_tokens=False)["input_ids"]
            cache = copy.deepcopy(res.past_key_values)
            logits = model(input_ids=torch.tensor([tgt]), past_key_values=cache, use_cache=True).logits[0, :-1].float()
            logits = torch.cat([res.logits[0, -1:].float(), logits])
            out.append(torch.log_softmax(logits, -1).gather(1, torch.tensor(tgt)[:, None]).sum().item())
    return out

def measure(tag):
    model.eval(); t = time.time(); right = collections.Counter(); n = collections.Counter()
    for conv, k, tool, allowed in held:
        a, b = scores(conv, k, [tool, other[tool]])
        key = (tool, allowed); n[key] += 1; right[key] += a > b
    print(tag, f"{sum(right.values())}/{len(held)}", {f"{k[0]}/{k[1]}": f"{right[k]}/{n[k]}" for k in sorted(n)}, f"{time.time()-t:.0f}s", flush=True)
    model.train()

def branch_seq(conv, k):
    turns = [(conv.messages(j), conv.target(j)) for j in range(k + 1)]
    s = build_sequence(tok, conv.id, turns)
    n = len(encode_target(tok, conv.target(k)))
    labels = [IGNORE] * (len(s.labels) - n) + s.labels[-n:]
    return s.input_ids, labels

model.eval(); measure("before")
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=lr)
pos = [i for i in train if i[3]]; neg = [i for i in train if not i[3]]
for step in range(steps):
    t = time.time(); batch = rng.sample(pos, 4) + rng.sample(neg, 4); tot = 0
    for conv, k, tool, allowed in batch:
        ids, labels = branch_seq(conv, k)
        ids = torch.tensor([ids])
        at = [i for i, l in enumerate(labels) if l != IGNORE]
        logits = model(input_ids=ids, logits_to_keep=torch.tensor([i - 1 for i in at]), use_cache=False).logits[0]
        loss = torch.nn.functional.cross_entropy(logits.float(), torch.tensor([labels[i] for i in at])) / len(batch)
        loss.backward(); tot += loss.item()
    opt.step(); opt.zero_grad()
    print(f"step {step+1} loss {tot:.3f} {time.time()-t:.0f}s", flush=True)
    if (step + 1) % 6 == 0: measure(f"after {step+1}")
