"""``routine merge``: an adapter merged into its base model and saved as one Hugging Face folder.

Servers that load LoRA weights but not peft's trained token rows (vLLM's ``--lora-modules``) cannot serve an
adapter trained with ``<routines>``/``</routines>`` as added tokens; the merged folder can be served as a plain
model (``vllm serve FOLDER``): its embedding matrix holds the trained rows and its tokenizer the two tokens.
The merge is the embedded backend's own (:func:`routines.backends.transformers.load_model`: LoRA merged in
float32, then converted), so the saved weights are the embedded executor's. In float32 the loaded folder
gives the embedded executor's logits exactly; in bfloat16 a loader that keeps RoPE's ``inv_freq`` in float32
(``from_pretrained``, vLLM) differs slightly from our backend, which rounds it (docs/training.md).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from routines.errors import CallerError


def merge_adapter(adapter: Path, out: Path, *, base_model: str | None = None, dtype: str = "bfloat16") -> dict[str, Any]:
    """Merge ``adapter`` into ``base_model`` (default: the embedded SmolLM2-135M) and save model and
    tokenizer to ``out``, which must be empty or absent (nothing already there is overwritten)."""
    if not (adapter / "adapter_config.json").is_file():
        raise CallerError(f"no LoRA adapter at {adapter}: expected adapter_config.json (a `routine train` --out folder)")
    if dtype not in ("bfloat16", "float32"):
        raise CallerError(f"dtype must be bfloat16 or float32, not {dtype!r}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CallerError(f"{out} exists and is not an empty folder: choose a new folder for the merged model")
    from routines.backends.transformers import load_model
    from trainer.train import SPECIAL_TOKENS

    started = time.perf_counter()
    loaded = load_model(base_model, adapter, dtype)
    model = _plain(loaded.model)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    loaded.tokenizer.save_pretrained(out)
    added = loaded.tokenizer.get_added_vocab()
    return {
        "out": str(out), "adapter": str(adapter), "dtype": dtype,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab": len(loaded.tokenizer), "routine_tokens": {t: added[t] for t in SPECIAL_TOKENS if t in added},
        "seconds": round(time.perf_counter() - started, 1),
    }


def _plain(model: Any) -> Any:
    """A copy of ``model`` that saves as a plain checkpoint. A model read from a GGUF file keeps transformers'
    GGUF quantizer, which refuses to save, and its ``quantization_config``, which would tell a server to read
    GGUF; where every layer was de-quantized to a plain ``Linear`` (the embedded SmolLM2 is), both are
    leftovers and are dropped. Packed GGUF layers are refused: their weights are not plain tensors."""
    import copy

    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return model
    packed = sorted({type(m).__name__ for m in model.modules() if type(m).__name__.startswith("Gguf")})
    if packed:
        raise CallerError(f"the base model keeps packed GGUF layers ({', '.join(packed)}): merge into a base model "
                          "in Hugging Face format (--base-model FOLDER)")
    plain = copy.deepcopy(model)
    plain.hf_quantizer = None
    if hasattr(plain.config, "quantization_config"):
        del plain.config.quantization_config
    return plain
