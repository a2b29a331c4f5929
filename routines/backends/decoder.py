"""A batched KV-cache decoder for Llama-family causal models, with a prefix shared by the whole batch.

It runs the model's own modules (embeddings, norms, projections, MLPs, rotary embedding), so a LoRA merged
into the weights is simply part of them, and replaces only the attention and the cache:

- :class:`KVCache` preallocates keys and values along the token axis (no ``torch.cat`` per step) and keeps
  one length per row.
- A forward pass may attend to a ``shared`` cache (batch 1, the group's common prompt prefix) before each
  row's own cache. The shared keys are multiplied with the queries of all rows in one matmul, so a decode
  step reads the shared prefix once, not once per row: on a CPU a decode step is bound by memory traffic,
  and a 2,000-token prefix weighs about as much as the model (46 KB per token for SmolLM2-135M).

Both parts go through one softmax, so the result is the same attention as over the concatenated cache.

:meth:`Decoder.extend` feeds each row one or more tokens in one pass (rows of different lengths padded):
under a grammar, the tokens it forces after a choice go in with the choice.

The cache takes the model's dtype. In bfloat16 (``TransformersBackend(dtype="bfloat16")``) the matmuls run
in bfloat16 and the softmax in float32, as Hugging Face's eager attention does; logits come back float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from routines.errors import UnsupportedModelError

SUPPORTED_TYPES = ("llama", "mistral", "qwen2")
PREFILL_CHUNK = 512
ATTEND_BLOCK = 64
"""Query rows in a block of the bfloat16 prefill attention (one kv head): its scores stay in cache."""
DECODE_BLOCK = 96
"""Query rows per kv head in a block of a decode step's attention (24 rows of one token: one block)."""
CAPACITY_STEP = 64
"""Cache capacity is a multiple of this many tokens."""


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class KVCache:
    """Keys and values of ``batch`` rows, each ``[batch, kv_heads, capacity, head_dim]`` per layer."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    lengths: torch.Tensor
    """Tokens held per row (int64, ``[batch]``)."""
    is_view: bool = False

    @property
    def batch(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def capacity(self) -> int:
        return int(self.keys[0].shape[2])

    def length(self, row: int = 0) -> int:
        return int(self.lengths[row])

    def reserve(self, tokens: int) -> None:
        """Make room for ``tokens`` tokens per row, keeping what is stored."""
        if tokens <= self.capacity:
            return
        if self.is_view:
            raise RuntimeError("a row view of a KVCache cannot grow; allocate the parent large enough")
        # Grow by half: a decode step attends over the whole capacity, so slack costs every step.
        capacity = -(-max(tokens, self.capacity + self.capacity // 2) // CAPACITY_STEP) * CAPACITY_STEP
        for store in (self.keys, self.values):
            for i, old in enumerate(store):
                new = old.new_zeros((old.shape[0], old.shape[1], capacity, old.shape[3]))
                new[:, :, : old.shape[2]] = old
                store[i] = new

    def row(self, index: int) -> KVCache:
        """A one-row view: writes through it land in this cache."""
        sl = slice(index, index + 1)
        return KVCache(
            [k[sl] for k in self.keys], [v[sl] for v in self.values], self.lengths[sl], is_view=True
        )

    def copy_prefix(self, src: int, dst: int, tokens: int) -> None:
        """Row ``dst`` gets the first ``tokens`` tokens of row ``src``."""
        for store in (self.keys, self.values):
            for t in store:
                t[dst, :, :tokens] = t[src, :, :tokens]
        self.lengths[dst] = tokens

    def append_row(self, other: KVCache, row: int = 0) -> None:
        """Append the tokens of ``other``'s ``row`` to this one-row cache."""
        n, start = other.length(row), self.length()
        self.reserve(start + n)
        for mine, theirs in ((self.keys, other.keys), (self.values, other.values)):
            for a, b in zip(mine, theirs, strict=True):
                a[0, :, start : start + n] = b[row, :, :n]
        self.lengths[0] = start + n

    def compact(self) -> KVCache:
        """A copy whose capacity is exactly its longest row: the shared prefix of a decode, read whole by
        every step (a slice of a larger buffer would make each step's matmul copy it first)."""
        n = int(self.lengths.max())
        return KVCache(
            [k[:, :, :n].contiguous() for k in self.keys],
            [v[:, :, :n].contiguous() for v in self.values],
            self.lengths.clone(),
        )

    def shrink(self, capacity: int) -> None:
        """Keep only the first ``capacity`` slots of every row (rows longer than that are cut to it)."""
        if capacity >= self.capacity:
            return
        self.keys = [k[:, :, :capacity].contiguous() for k in self.keys]
        self.values = [v[:, :, :capacity].contiguous() for v in self.values]
        self.lengths.clamp_(max=capacity)

    def select(self, rows: Sequence[int]) -> None:
        """Keep only these rows, in this order."""
        index = torch.tensor(list(rows), dtype=torch.long)
        self.keys = [k.index_select(0, index) for k in self.keys]
        self.values = [v.index_select(0, index) for v in self.values]
        self.lengths = self.lengths.index_select(0, index)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Decoder:
    """Forward passes of a Llama-family ``*ForCausalLM`` over :class:`KVCache` rows."""

    def __init__(self, lm: Any) -> None:
        config = lm.config
        if config.model_type not in SUPPORTED_TYPES or hasattr(lm.model.layers[0].self_attn, "q_norm"):
            raise UnsupportedModelError(
                f"the embedded decoder supports {', '.join(SUPPORTED_TYPES)} models, not {config.model_type!r}; "
                "serve this model with vLLM and use OpenAIBackend"
            )
        self.lm = lm
        self.layers = list(lm.model.layers)
        self.kv_heads = int(config.num_key_value_heads)
        self.groups = int(config.num_attention_heads) // self.kv_heads
        self.head_dim = int(self.layers[0].self_attn.head_dim)
        self.dtype = lm.get_input_embeddings().weight.dtype
        self.scaling = float(self.layers[0].self_attn.scaling)
        self.vocab_size = int(lm.get_output_embeddings().weight.shape[0])
        self.max_positions = int(getattr(config, "max_position_embeddings", 1 << 30))
        window = getattr(config, "sliding_window", None)
        if window and getattr(config, "use_sliding_window", True):  # no window here: stay inside it
            self.max_positions = min(self.max_positions, int(window))

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        capacity = max(CAPACITY_STEP, -(-capacity // CAPACITY_STEP) * CAPACITY_STEP)
        shape = (batch, self.kv_heads, capacity, self.head_dim)
        # Zeros, not empty: a masked slot still enters the matmul with weight 0, and 0 * NaN is NaN.
        return KVCache(
            keys=[torch.zeros(shape, dtype=self.dtype) for _ in self.layers],
            values=[torch.zeros(shape, dtype=self.dtype) for _ in self.layers],
            lengths=torch.zeros(batch, dtype=torch.long),
        )

    @torch.inference_mode()
    def prefill(
        self, ids: Sequence[int], cache: KVCache, shared: KVCache | None = None, *, logits: bool = True
    ) -> torch.Tensor | None:
        """Append ``ids`` to the one-row ``cache``; the next-token logits ``[1, vocab]`` when asked."""
        out = None
        for start in range(0, len(ids), PREFILL_CHUNK):
            chunk = torch.tensor([list(ids[start : start + PREFILL_CHUNK])], dtype=torch.long)
            last = start + PREFILL_CHUNK >= len(ids)
            out = self._forward(chunk, cache, shared, logits=logits and last)
        return out

    @torch.inference_mode()
    def step(self, tokens: Sequence[int], cache: KVCache, shared: KVCache | None = None) -> torch.Tensor:
        """Append one token to every row; the next-token logits ``[batch, vocab]``. Each step reads all of
        ``shared`` and of ``cache``'s capacity: pass ``shared.compact()`` and size ``cache`` closely."""
        return self.extend([[t] for t in tokens], cache, shared)

    @torch.inference_mode()
    def extend(self, tokens: Sequence[Sequence[int]], cache: KVCache, shared: KVCache | None = None) -> torch.Tensor:
        """Append ``tokens[r]`` (one or more) to every row ``r`` in one pass; the logits after each row's last
        token, ``[batch, vocab]``. Rows feed different numbers of tokens (grammar-forced runs): the short
        ones are padded, and what the padding writes past a row's length is masked and later overwritten."""
        if len(tokens) != cache.batch or any(not t for t in tokens):
            raise ValueError("extend takes one non-empty token list per cache row")
        counts = torch.tensor([len(t) for t in tokens], dtype=torch.long)
        width = int(counts.max())
        padded = torch.tensor([list(t) + [t[-1]] * (width - len(t)) for t in tokens], dtype=torch.long)
        out = self._forward(padded, cache, shared, logits=True, counts=counts)
        assert out is not None
        return out

    def _forward(
        self,
        tokens: torch.Tensor,
        cache: KVCache,
        shared: KVCache | None,
        *,
        logits: bool,
        counts: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """Feed ``tokens`` ``[batch, width]``: one row (a prefill chunk) or every row of ``cache`` (a decode
        step; ``counts`` says how many of each row's tokens are real)."""
        batch, width = tokens.shape
        decoding = counts is not None
        if not decoding and batch > 1:
            raise ValueError("a prefill feeds one row; feed every row through extend")
        if counts is None:
            counts = torch.full((batch,), width, dtype=torch.long)
        prefix = shared.length() if shared is not None else 0
        start = cache.lengths.clone()
        span = int((start + counts).max())
        if prefix + span > self.max_positions:
            raise ValueError(
                f"the conversation needs {prefix + span} positions but the model has {self.max_positions}; "
                "shorten the prompt or lower max_tokens"
            )
        cache.reserve(int(start.max()) + width)
        offsets = torch.arange(width)
        positions = prefix + start[:, None] + offsets  # [batch, width]
        bias = torch.zeros(0)
        if decoding:
            # A decode step attends over each row's whole capacity: a matmul over a slice of the token axis
            # copies the slice first, which costs several times the matmul. Slot s is visible to a row's
            # token j (written at start + j) when s <= start + j: causal, own row; the slack is masked.
            visible = torch.arange(cache.capacity)[None, None, :] <= positions[:, :, None] - prefix
            bias = torch.zeros(visible.shape, dtype=self.dtype).masked_fill_(~visible, float("-inf"))
            # [1, b, g * w, capacity] against scores [kvh, b, g * w, capacity]: rows (head in group, token)
            bias = bias[:, None].expand(batch, self.groups, width, -1).reshape(1, batch, self.groups * width, -1)
        model = self.lm.model
        hidden = model.embed_tokens(tokens)
        cos, sin = model.rotary_emb(hidden, positions)
        cos, sin = cos[:, None], sin[:, None]
        rows = torch.arange(batch)
        for index, layer in enumerate(self.layers):
            attn = layer.self_attn
            x = layer.input_layernorm(hidden)
            q = attn.q_proj(x).view(batch, width, -1, self.head_dim).transpose(1, 2)
            k = attn.k_proj(x).view(batch, width, -1, self.head_dim).transpose(1, 2)
            v = attn.v_proj(x).view(batch, width, -1, self.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            keys, values = cache.keys[index], cache.values[index]
            if width == 1:
                keys[rows, :, start] = k[:, :, 0]
                values[rows, :, start] = v[:, :, 0]
            else:
                for r in range(batch):
                    s0 = int(start[r])
                    keys[r, :, s0 : s0 + width] = k[r]
                    values[r, :, s0 : s0 + width] = v[r]
            pre = (shared.keys[index][0, :, :prefix], shared.values[index][0, :, :prefix]) if prefix else None
            if decoding:
                out = self._attend_rows(q, keys, values, bias, pre)
            else:
                out = self._attend_prefill(q, keys[:, :, :span], values[:, :, :span], pre)
            hidden = hidden + attn.o_proj(out)
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        cache.lengths += counts
        if not logits:
            return None
        last = hidden[rows, counts - 1]  # each row's last real token
        return self.lm.lm_head(model.norm(last)).float()

    def _attend_prefill(
        self,
        q: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        prefix: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        """One row's chunk of ``w`` tokens written at ``start``: attention over prefix + row (a prefill is
        compute-bound, so the copy of the prefix into one tensor costs nothing that matters)."""
        _, heads, width, dim = q.shape
        if prefix is not None:
            keys = torch.cat((prefix[0][None], keys), dim=2)
            values = torch.cat((prefix[1][None], values), dim=2)
        if q.dtype == torch.bfloat16:
            return self._attend_blocked(q, keys, values)
        total = keys.shape[2]
        # Query j (at absolute slot total - width + j) sees every slot up to itself.
        mask = torch.arange(total)[None, :] <= (total - width + torch.arange(width))[:, None]
        out = torch.nn.functional.scaled_dot_product_attention(
            q, keys, values, attn_mask=mask, scale=self.scaling, enable_gqa=True
        )
        return out.transpose(1, 2).reshape(1, width, heads * dim)

    def _attend_blocked(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The bfloat16 prefill: one kv head at a time (its keys and values, 1.4 MB at 5,500 tokens, stay in
        L2), blocks of ``ATTEND_BLOCK`` query rows, each a bfloat16 matmul, a softmax (float32 inside) and a
        bfloat16 matmul. Measured here (2026-11, 237 tokens over 5,537): 22 ms a layer, against 47 ms for
        all heads per block and about twice that for SDPA's CPU kernel, which gains nothing from bfloat16."""
        _, heads, width, dim = q.shape
        kvh, g = self.kv_heads, self.groups
        total = keys.shape[2]
        qg = (q * self.scaling).reshape(kvh, g * width, dim)  # head h = kv head h // g: rows (j, t)
        # Query t (at absolute slot total - width + t) sees every slot up to itself; only the last
        # ``width`` slots can be hidden from it.
        t = torch.arange(g * width) % width
        hidden = torch.arange(width)[None, :] > t[:, None]  # [g * width, width] over the last slots
        out = torch.empty_like(qg)
        for h in range(kvh):
            kt, v = keys[0, h].t(), values[0, h]
            for lo in range(0, g * width, ATTEND_BLOCK):
                hi = min(lo + ATTEND_BLOCK, g * width)
                scores = qg[h, lo:hi] @ kt
                scores[:, total - width :].masked_fill_(hidden[lo:hi], float("-inf"))
                torch.mm(torch.softmax(scores, dim=-1), v, out=out[h, lo:hi])
        return out.view(heads, width, dim).transpose(0, 1).reshape(1, width, heads * dim)

    def _attend_rows(
        self,
        q: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        bias: torch.Tensor,
        prefix: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        """:meth:`_attend` over blocks of rows holding about ``DECODE_BLOCK`` query rows per kv head: a step
        that feeds forced runs (several tokens a row) would otherwise build scores of tens of megabytes."""
        batch, _, width, _ = q.shape
        per = max(1, DECODE_BLOCK // (self.groups * width))
        if per >= batch:
            return self._attend(q, keys, values, bias, prefix)
        return torch.cat(
            [
                self._attend(q[lo : lo + per], keys[lo : lo + per], values[lo : lo + per], bias[:, lo : lo + per], prefix)
                for lo in range(0, batch, per)
            ]
        )

    def _attend(
        self,
        q: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        bias: torch.Tensor,
        prefix: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        """``q`` ``[b, heads, w, d]`` over the shared ``prefix`` (``[kv_heads, p, d]`` each) then each row's
        own ``keys``/``values`` (``[b, kv_heads, capacity, d]``, masked by ``bias``); returns
        ``[b, w, heads * d]``.

        Scores are laid out ``[kv_heads, b, g * w, p + capacity]`` so the prefix part is one matmul for all rows
        and no permute copies the big half; the softmax takes the model's dtype (in bfloat16 torch computes
        it in float32 and rounds once)."""
        batch, heads, width, dim = q.shape
        kvh, g = self.kv_heads, self.groups
        qg = (q * self.scaling).reshape(batch, kvh, g * width, dim)  # a power of two for these heads: exact
        own = (qg @ keys.transpose(-1, -2)).transpose(0, 1)  # [kvh, b, g*w, capacity]
        p = 0
        if prefix is None:
            scores = own.contiguous()
        else:
            pk, pv = prefix
            p = pk.shape[1]
            qp = qg.transpose(0, 1).reshape(kvh, batch * g * width, dim)
            shared = (qp @ pk.transpose(-1, -2)).view(kvh, batch, g * width, p)
            scores = torch.cat((shared, own), dim=-1)
        scores[..., p:] += bias
        weights = torch.softmax(scores, dim=-1)
        out = weights[..., p:].transpose(0, 1) @ values  # [b, kvh, g*w, d]
        if prefix is not None:
            wp = weights[..., :p].reshape(kvh, batch * g * width, p)
            out = out + (wp @ pv).view(kvh, batch, g * width, dim).transpose(0, 1)
        return out.view(batch, heads, width, dim).transpose(1, 2).reshape(batch, width, heads * dim)
