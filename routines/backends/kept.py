"""The KV caches the embedded backend keeps between calls, and which one a new prompt continues."""

from __future__ import annotations

from dataclasses import dataclass, field

from routines.backends.decoder import Decoder, KVCache, common_prefix

MIN_SHARED = 64
"""Tokens a prompt must share with a kept cache to continue it (a chat template's opening is shared by all)."""
KEPT_PREFIXES = 16
"""KV caches kept between calls (about 70 MB each for a 3,000-token conversation of SmolLM2-135M). One was not
enough once model mode read the inputs first: the extraction prompt replaced the run's cached system prompt
before every run (first call 4.6 to 5.7 s instead of 0.2 s). With one per Routine and its extraction prompt,
a run of a Routine used before prefills only its question and user."""


@dataclass(eq=False)
class Kept:
    """One kept KV cache and the token ids it holds."""

    cache: KVCache | None = None
    ids: list[int] = field(default_factory=list)

    def take(self, dec: Decoder, ids: list[int]) -> int:
        """Hold exactly ``ids``, prefilling only past the prefix already held; returns the tokens reused."""
        if self.cache is None:
            self.cache, self.ids = dec.new_cache(1, len(ids)), []
        keep = common_prefix(self.ids, ids)
        self.cache.lengths[0] = keep
        self.ids = ids[:keep]
        if keep < len(ids):
            dec.prefill(ids[keep:], self.cache, logits=False)
            self.ids = list(ids)
        return keep

    def hold_conversation(self, dec: Decoder, prompt: list[int], out: list[int], cache: KVCache, shared_len: int) -> None:
        """After a single request decoded into ``cache`` (its row 0 holds the prompt past the first
        ``shared_len`` tokens, then the answer): hold prompt + answer, so the run's next step starts with both."""
        fed = (prompt[shared_len:] + out)[: cache.length(0)]
        if self.cache is None:
            self.cache, self.ids = dec.new_cache(1, cache.length(0)), []
        self.cache.lengths[0] = shared_len
        self.cache.append_row(cache, 0)
        self.ids = prompt[:shared_len] + fed


def pick_kept(kept: list[Kept], ids: list[int]) -> Kept:
    """The kept cache sharing the longest prefix with ``ids``, unless that prefix is under half of what the
    cache holds (another Routine's prompt shares only the opening rules) or :data:`MIN_SHARED` tokens: then
    a new one, or the least recently used. ``kept`` is least recently used first; the pick moves to its end.
    Several are kept so that interleaved conversations (a run's input extraction, then its calls; the next run
    of the same Routine) each find their own prefix."""
    best = max(kept, key=lambda k: common_prefix(k.ids, ids), default=None)
    if best is None or common_prefix(best.ids, ids) < max(MIN_SHARED, len(best.ids) // 2):
        best = Kept() if len(kept) < KEPT_PREFIXES else kept[0]
    if best in kept:
        kept.remove(best)
    kept.append(best)
    return best
