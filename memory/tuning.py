"""Fine-tuning the embedding model on one store's Routines, example questions and negative questions.

MiniLM out of the box confuses Routines whose texts share words (attendance and leave, an employee's profile
and their performance review) and cannot tell an HR request that no Routine serves from one that a Routine
does. A few minutes of contrastive fine-tuning on the store's own data fixes most of it
(docs/procedure-memory.md has the numbers). What is trained is a LoRA adapter (rank 8 on the attention and
feed-forward projections of all-MiniLM-L6-v2: 338k parameters, 1.3 MB) kept in the store itself
(``tuned_models``), so it travels with the store file and is reproducible from it: same data, same config,
same seed, same adapter name. ``embedder_for(store)`` returns the embedder with the store's newest adapter
merged in (no ``peft`` needed for that); tuning needs ``peft`` (``routine-mcp[train]``).

The loss, per batch of example questions: cross-entropy of the question against every Routine's text
(temperature 0.05), a supervised contrastive term pulling questions of the same Routine together, and a
hinge pushing negative questions below ``negative_ceiling`` cosine to every Routine's text.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memory.embeddings import DEFAULT_RECIPE, Embedder, routine_text
from memory.errors import EmbeddingModelError
from memory.store import ProcedureStore

log = logging.getLogger(__name__)

TARGET_MODULES = ("query", "key", "value", "dense")


@dataclass(frozen=True)
class TuneConfig:
    """How an adapter is trained (the defaults were chosen on the HR train questions, docs/procedure-memory.md)."""

    epochs: int = 1
    lr: float = 1e-3
    rank: int = 8
    batch_size: int = 32
    negatives_per_batch: int = 8
    negative_ceiling: float = 0.1
    seed: int = 0
    recipe: str = DEFAULT_RECIPE


@dataclass(frozen=True)
class TuneResult:
    name: str
    trained: bool
    """False when the store already held the adapter for exactly this data and config."""
    examples: int
    negatives: int
    routines: int
    steps: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class TrainingData:
    ids: list[str]
    texts: list[str]
    examples: list[tuple[str, int]]
    negatives: list[str]


def training_data(store: ProcedureStore, recipe: str = DEFAULT_RECIPE) -> TrainingData:
    """The store's Routine texts, its example questions (with the index of their Routine) and negatives."""
    routines = list(store.latest())
    ids = [r.id or "" for r in routines]
    index = {rid: i for i, rid in enumerate(ids)}
    examples = sorted((e.text, index[e.routine_id]) for e in store.examples() if e.routine_id in index)
    negatives = sorted(e.text for e in store.negatives())
    return TrainingData(ids, [routine_text(r, recipe) for r in routines], examples, negatives)


def adapter_name(base_model: str, data: TrainingData, config: TuneConfig) -> str:
    """``tuned-`` and a hash of everything the adapter depends on: same data and config, same name."""
    payload = json.dumps([base_model, data.ids, data.texts, data.examples, data.negatives, asdict(config)])
    return "tuned-" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


def tune(
    store: ProcedureStore,
    *,
    model: str | None = None,
    config: TuneConfig | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> TuneResult:
    """Train an adapter for the store's embedding model on its Routines, examples and negatives, and store it
    (a no-op when the store already holds the adapter for exactly this data and config, unless ``force``)."""
    config = config or TuneConfig()
    base = Embedder(model)
    data = training_data(store, config.recipe)
    if not data.examples:
        raise EmbeddingModelError("tuning needs example questions: import some first "
                                  "(routine routines examples import FILE)")
    if len({label for _, label in data.examples}) < 2:
        raise EmbeddingModelError("tuning needs example questions of at least two Routines")
    name = adapter_name(base.name, data, config)
    counts = {"examples": len(data.examples), "negatives": len(data.negatives), "routines": len(data.ids)}
    if not force and store.tuned_model(base.name, name) is not None:
        return TuneResult(name, False, **counts)
    started = time.perf_counter()
    adapter, steps = train_adapter(base.location, data, config, progress=progress)
    seconds = round(time.perf_counter() - started, 1)
    info = {"config": asdict(config), **counts, "steps": steps, "seconds": seconds}
    store.put_tuned_model(name, base.name, adapter, info)
    log.info("tuned %s on %d examples and %d negatives in %.0f s", name, len(data.examples), len(data.negatives),
             seconds)
    return TuneResult(name, True, **counts, steps=steps, seconds=seconds)


def train_adapter(
    location: str, data: TrainingData, config: TuneConfig, *, progress: Callable[[str], None] | None = None
) -> tuple[bytes, int]:
    """Train a LoRA adapter on a fresh copy of the model at ``location``; return it serialised and the number
    of optimizer steps."""
    try:
        import torch
        import torch.nn.functional as F
        from peft import LoraConfig, get_peft_model
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbeddingModelError(f"tuning needs torch, sentence-transformers and peft "
                                  f"(pip install 'routine-mcp[local,train]'): {exc}") from None
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    model = SentenceTransformer(location, device="cpu")
    peft_model = get_peft_model(model[0].auto_model, LoraConfig(
        r=config.rank, lora_alpha=2 * config.rank, target_modules=list(TARGET_MODULES), lora_dropout=0.0))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr)

    def encode(texts: list[str]) -> Any:
        features = model.tokenize(texts) if not hasattr(model, "preprocess") else model.preprocess(texts)
        return F.normalize(model(features)["sentence_embedding"], dim=-1)

    order = list(data.examples)
    steps = 0
    for epoch in range(config.epochs):
        rng.shuffle(order)
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            labels = torch.tensor([label for _, label in batch])
            questions = encode([text for text, _ in batch])
            routines = encode(data.texts)
            loss = F.cross_entropy(20 * questions @ routines.T, labels)
            loss = loss + 0.5 * _supervised_contrastive(questions, labels, torch)
            if data.negatives:
                negatives = encode(rng.sample(data.negatives, min(config.negatives_per_batch, len(data.negatives))))
                loss = loss + 5 * F.relu(negatives @ routines.T - config.negative_ceiling).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
        if progress is not None:
            progress(f"epoch {epoch + 1}/{config.epochs}: {steps} steps, loss {loss.item():.3f}")
    arrays: dict[str, np.ndarray] = {}
    for module_name, module in peft_model.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            key = module_name.removeprefix("base_model.model.")
            arrays[f"{key}|A"] = module.lora_A["default"].weight.detach().float().numpy()
            arrays[f"{key}|B"] = (module.lora_B["default"].weight.detach().float() * module.scaling["default"]).numpy()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue(), steps


def _supervised_contrastive(questions: Any, labels: Any, torch: Any) -> Any:
    """Each question should be closer to the other questions of its Routine than to the rest of the batch."""
    sims = 20 * questions @ questions.T
    eye = torch.eye(len(labels))
    sims = sims - 1e4 * eye
    log_prob = sims - torch.logsumexp(sims, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None]).float() - eye
    return (-(log_prob * positives).sum(1) / positives.sum(1).clamp(min=1)).mean()


def merge_adapter(model: Any, adapter: bytes) -> None:
    """Add a serialised adapter's low-rank updates (``B @ A``, scaled) to a SentenceTransformer's weights."""
    import torch

    arrays = np.load(io.BytesIO(adapter))
    transformer = model[0].auto_model
    with torch.no_grad():
        for key in sorted({k.rsplit("|", 1)[0] for k in arrays.files}):
            try:
                linear = transformer.get_submodule(key)
            except AttributeError:
                raise EmbeddingModelError(f"the tuned adapter does not fit this model (no module {key}); "
                                          "tune again (routine routines tune --force)") from None
            delta = torch.from_numpy(arrays[f"{key}|B"] @ arrays[f"{key}|A"])
            linear.weight += delta.to(linear.weight.dtype)


def embedder_for(store: ProcedureStore, model: str | None = None) -> Embedder:
    """The embedder retrieval uses for ``store``: the model (default all-MiniLM-L6-v2) with the store's newest
    tuned adapter for it merged in, or the plain model when the store has none."""
    base = Embedder(model)
    tuned = store.tuned_model(base.name)
    if tuned is None:
        return base
    name, adapter, _ = tuned
    return Embedder(model, adapter=(name, adapter))


def export_adapter(store: ProcedureStore, path: str | Path, model: str | None = None) -> str:
    """Write the store's newest adapter for ``model`` to ``path`` (the adapter, ``.npz``) and ``path`` with
    ``.json`` (its name, base model and training info); return its name."""
    base = Embedder(model)
    tuned = store.tuned_model(base.name)
    if tuned is None:
        raise EmbeddingModelError("this store has no tuned adapter to export; run routine routines tune first")
    name, adapter, info = tuned
    target = Path(path)
    target.write_bytes(adapter)
    target.with_suffix(".json").write_text(
        json.dumps({"name": name, "base_model": base.name, "info": info}, indent=2) + "\n", encoding="utf-8")
    return name


def import_adapter(store: ProcedureStore, path: str | Path) -> tuple[str, bool]:
    """Store the adapter written by :func:`export_adapter` as the store's newest; return its name and whether
    it was tuned on exactly this store's data and config (else it still works, tuned on other data)."""
    source = Path(path)
    meta = json.loads(source.with_suffix(".json").read_text(encoding="utf-8"))
    adapter = source.read_bytes()
    np.load(io.BytesIO(adapter))  # a readable adapter, or a clear error now
    config = TuneConfig(**meta["info"].get("config", {}))
    exact = adapter_name(meta["base_model"], training_data(store, config.recipe), config) == meta["name"]
    store.put_tuned_model(meta["name"], meta["base_model"], adapter, {**meta["info"], "imported_from": source.name})
    return meta["name"], exact
