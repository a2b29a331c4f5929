"""The fast path for embedding one question: what ``Retriever.retrieve`` waits for on every call.

A question is one text of about a dozen tokens. For it ``SentenceTransformer.encode`` adds its bookkeeping
(batching, sorting by length, a feature dict through each module: about 2 ms here) to a forward pass that
reads every weight of the six layers once for a dozen rows of arithmetic, so it is bound by memory. Profiled
with torch's profiler, the linear layers were 85% of the forward pass. :class:`QueryEncoder` keeps its own
copy of the model's transformer for that one text:

- called directly under ``torch.inference_mode``, then mean pooling and normalising done inline (one text has
  no padding, so the mean over its tokens is what the model's Pooling module computes);
- optionally (``QUERY_BFLOAT16``, off) in bfloat16, without BERT's pooler (a dense layer sentence-transformers
  computes and throws away), on CPUs that multiply bfloat16 natively (AVX512-BF16 or AMX): half the bytes to
  read. The question's vector then
  differs from the float32 one by a cosine of 0.9999 or closer (0.99993 at worst over the HR test questions);
  the stored Routine and example vectors stay float32, from :meth:`memory.embeddings.Embedder.embed`, so
  existing stores are used as they are. Elsewhere (emulated bfloat16 is slower than float32) it calls the
  model's own float32 transformer and gives ``encode``'s vector.

Measured on this busy 2-core CPU for a question of 8 to 16 tokens: 12 ms p50 through ``encode``, 8 ms through
this path (docs/procedure-memory.md, Speed). int8 (``torch.ao.quantization.quantize_dynamic``) took 5 ms but
moved the vectors too far (cosine 0.95 on average, 0.89 at worst; 0.978 per channel), and a traced
(``torch.jit``) copy saved another 1.6 ms through an API torch deprecates. Models of another shape (not
transformer, mean pooling, normalise) or on a GPU keep ``encode``: a fresh encoder is checked against
``encode`` on a probe text and not used when they disagree.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from memory.threads import one_torch_thread

QUERY_BFLOAT16 = False
"""Off by default: in bfloat16 a question took 8 ms instead of about 10 (float32 through this path; 12 through
``encode``), but its vector moved enough (cosine 0.9999) to flip two borderline held-out questions of the tuned
store (right Routine 92.9% to 92.1%, uncovered requests refused 87.5% to 83.3%). In float32 the question's
vector is ``encode``'s, so retrieval answers exactly as before."""

log = logging.getLogger(__name__)

AGREEMENT = 0.999
"""The least cosine between the fast path's vector and ``encode``'s for a probe text, else the fast path is off."""
PROBE = "How many leave days does Ana Lopez have left this year?"


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (else bfloat16 is emulated and slower than float32)."""
    try:
        import torch

        cpu = torch.cpu
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # another torch or platform: float32, the safe choice
        return False


def _mean_pooling(module: Any) -> bool:
    mode = getattr(module, "pooling_mode", None)
    if isinstance(mode, str):
        return mode == "mean"
    config = module.get_config_dict() if hasattr(module, "get_config_dict") else {}
    modes = {k: v for k, v in config.items() if k.startswith("pooling_mode_")}
    return bool(modes.get("pooling_mode_mean_tokens")) and not any(v for k, v in modes.items()
                                                                   if k != "pooling_mode_mean_tokens")


class QueryEncoder:
    """One text at a time through the transformer of a (transformer, mean pooling, normalise)
    SentenceTransformer, as a unit float32 vector. Build it with :meth:`for_model`."""

    def __init__(self, model: Any, transformer: Any, dtype: Any) -> None:
        self._preprocess = getattr(model, "preprocess", None) or model.tokenize
        self.transformer = transformer
        self.dtype = dtype

    @classmethod
    def for_model(cls, model: Any, device: str = "cpu", *, bfloat16: bool = QUERY_BFLOAT16) -> QueryEncoder | None:
        """The fast path for ``model`` (a loaded, eval-mode SentenceTransformer), or ``None`` where the model
        has another shape, runs on a GPU, or the fast path does not agree with ``encode``. ``bfloat16``: run
        in bfloat16 where the CPU multiplies it natively (faster, vectors slightly off; see QUERY_BFLOAT16)."""
        import torch

        modules = list(model)
        if device != "cpu" or len(modules) != 3 or not hasattr(modules[0], "auto_model"):
            return None
        if not _mean_pooling(modules[1]) or type(modules[2]).__name__ != "Normalize":
            return None
        source = modules[0].auto_model
        dtype = torch.bfloat16 if bfloat16 and native_bfloat16() else torch.float32
        if dtype == torch.float32:
            transformer = source  # share the model's own weights (its pooler, if any, costs 3%)
        else:
            transformer = copy.deepcopy(source).to(dtype).eval()
            if getattr(transformer, "pooler", None) is not None:
                transformer.pooler = None
        encoder = cls(model, transformer, dtype)
        with one_torch_thread():
            reference = model.encode([PROBE], normalize_embeddings=True, convert_to_numpy=True,
                                     show_progress_bar=False)[0]
        agreement = float(np.dot(encoder(PROBE), reference))
        if agreement < AGREEMENT:
            log.warning("fast query embedding disagrees with the model (cosine %.4f): using encode()", agreement)
            return None
        log.debug("fast query embedding in %s (cosine %.6f to encode)", dtype, agreement)
        return encoder

    def __call__(self, text: str) -> np.ndarray:
        import torch

        features = self._preprocess([text])
        inputs = {k: features[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in features}
        with torch.inference_mode(), one_torch_thread():
            hidden = self.transformer(**inputs).last_hidden_state[0].float()
            vector = hidden.mean(0)
            vector = vector / vector.norm().clamp(min=1e-12)
        return vector.numpy()


class QueryCache:
    """The last ``size`` questions' vectors (least recently used out first); ``size`` 0 keeps none."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.hits = 0
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> np.ndarray | None:
        with self._lock:
            vector = self._vectors.get(text)
            if vector is None:
                return None
            self._vectors.move_to_end(text)
            self.hits += 1
            return vector.copy()

    def put(self, text: str, vector: np.ndarray) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._vectors[text] = vector.copy()
            self._vectors.move_to_end(text)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)

    def __len__(self) -> int:
        return len(self._vectors)
