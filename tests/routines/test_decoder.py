"""The KV-cache decoder against the model's own forward pass, in float32 and bfloat16 (real SmolLM2-135M)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from routines.backends.transformers import resolve_dtype

PROMPT = (
    "<|im_start|>system\nYou call HR tools. Tools: search_employee(name), get_salary(employee_id).<|im_end|>\n"
    "<|im_start|>user\nHow much does Grace Hopper from Accounts Payable earn?<|im_end|>\n"
    "<|im_start|>assistant\n<tool_call>\n"
)


def test_dtype_names_are_checked() -> None:
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype("bfloat16") is torch.bfloat16
    assert resolve_dtype("auto") in (torch.float32, torch.bfloat16)
    with pytest.raises(ValueError, match="dtype must be one of auto, float32, bfloat16"):
        resolve_dtype("fp8")


def decoded_logits(lm: Any, ids: list[int], split: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits after the prompt's last token and after one more token, through a shared prefix of ``split``
    tokens, a second row that shares it, and a batched step: every path the backend uses."""
    dec = lm.decoder
    with torch.inference_mode():
        shared = dec.new_cache(1, split)
        dec.prefill(ids[:split], shared, logits=False)
        cache = dec.new_cache(2, len(ids) + 4)
        first = dec.prefill(ids[split:], cache.row(0), shared)
        dec.prefill(ids[split:-3], cache.row(1), shared)  # a shorter row beside it
        assert first is not None
        nxt = int(first[0].argmax())
        stepped = dec.step([nxt, ids[-3]], cache, shared)
    return first[0], stepped[0]


def reference_logits(lm: Any, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor, int]:
    with torch.inference_mode():
        full = lm.model(torch.tensor([ids])).logits[0, -1].float()
        nxt = int(full.argmax())
        more = lm.model(torch.tensor([[*ids, nxt]])).logits[0, -1].float()
    return full, more, nxt


@pytest.mark.model
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_decoder_matches_the_models_own_forward(dtype: str) -> None:
    from routines.backends.transformers import load_model

    reference = load_model(dtype="float32")
    ids = reference.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    want, want_next, nxt = reference_logits(reference, ids)
    lm = load_model(dtype=dtype)
    assert lm.decoder.dtype is resolve_dtype(dtype)
    got, got_next = decoded_logits(lm, ids, split=len(ids) // 2)
    assert got.dtype is torch.float32  # logits come back float32 whatever the model's dtype
    if dtype == "float32":
        torch.testing.assert_close(got, want, atol=2e-3, rtol=1e-4)
        torch.testing.assert_close(got_next, want_next, atol=2e-3, rtol=1e-4)
    else:  # bfloat16 rounds: the same picks, logits close in direction
        assert int(got.argmax()) == nxt and int(got_next.argmax()) == int(want_next.argmax())
        for a, b in ((got, want), (got_next, want_next)):
            assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.999


def test_compact_cache_keeps_exactly_the_tokens_held() -> None:
    from routines.backends.decoder import KVCache

    keys = [torch.arange(2 * 3 * 8 * 4, dtype=torch.float32).view(2, 3, 8, 4)]
    cache = KVCache(keys, [k + 1 for k in keys], torch.tensor([5, 3]))
    compact = cache.compact()
    assert compact.capacity == 5 and compact.keys[0].is_contiguous()
    assert torch.equal(compact.keys[0], keys[0][:, :, :5]) and torch.equal(compact.values[0], keys[0][:, :, :5] + 1)
    compact.keys[0].zero_()  # a copy: the original is untouched
    assert keys[0].sum() > 0


@pytest.mark.model
def test_extend_feeds_ragged_runs_like_single_steps() -> None:
    """Rows feeding 3 tokens and 1 token in one pass get the logits they get fed one token at a time."""
    from routines.backends.transformers import load_model

    lm = load_model(dtype="float32")
    dec = lm.decoder
    ids = lm.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    split = len(ids) - 6
    with torch.inference_mode():
        shared = dec.new_cache(1, split)
        dec.prefill(ids[:split], shared, logits=False)
        shared = shared.compact()
        ragged = dec.new_cache(2, 16)
        stepped = dec.new_cache(2, 16)
        for cache in (ragged, stepped):
            dec.prefill(ids[split : split + 2], cache.row(0), shared)
            dec.prefill(ids[split : split + 1], cache.row(1), shared)
        got = dec.extend([ids[split + 2 : split + 5], [ids[split + 1]]], ragged, shared)
        first = dec.step([ids[split + 2], ids[split + 1]], stepped, shared)
        dec.step([ids[split + 3], ids[split + 2]], stepped, shared)
        want = dec.step([ids[split + 4], ids[split + 3]], stepped, shared)
    assert ragged.lengths.tolist() == [5, 2]
    torch.testing.assert_close(got[0], want[0], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(got[1], first[1], atol=1e-3, rtol=1e-4)
