"""Continuous batching for the embedded backend: decoding a group of conversations that share a prefix.

A group can hold more conversations than decode together (``slots``). The first ``slots`` are prefilled and
decoded as one batch; whenever one finishes, the next waiting conversation is prefilled into its slot and
joins the batch at the next step. Without it a batch runs as long as its longest answer: one answer that
loops to ``max_tokens`` (a small model does, inside a free-form JSON object) kept a whole batch's time
going one row at a time, about 20 % of an evaluation run's time in our measurements (2026-11).

Each slot remembers the tokens its cache holds, so a newcomer copies the longest matching prefix from any
slot (the samples of one query nest: step k+1's prompt starts with most of step k's) and prefills only the
rest. Once nothing waits, finished rows are dropped from the batch when a quarter of it idles.

Grammar-constrained rows feed the tokens the grammar forces after each choice in the same pass as the choice
(:meth:`routines.backends.decoder.Decoder.extend`): most of a tool call is forced.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from routines.backends import constrain
from routines.backends.decoder import CAPACITY_STEP, Decoder, KVCache, common_prefix


@dataclass
class Row:
    """One conversation being decoded."""

    index: int
    ids: list[int]
    budget: int = 0
    """Tokens this row may generate (``max_tokens``, less near the model's context limit)."""
    reused: int = 0
    out: list[int] = field(default_factory=list)
    finish: str | None = None
    finished_at: float = 0.0


StopCheck = Callable[[list[int]], bool]
"""Free decoding: True when the tokens generated so far end the answer (e.g. a closing tag)."""


class GroupDecoder:
    """Greedy decoding of ``rows`` (sorted by tokens) after the ``shared`` prefix of ``shared_len`` tokens,
    at most ``slots`` at once. :meth:`run` fills every row's ``out``, ``finish`` and ``reused``."""

    def __init__(
        self,
        decoder: Decoder,
        rows: Sequence[Row],
        *,
        shared: KVCache | None,
        shared_len: int,
        slots: int,
        room: int,
        reuse: bool,
        stop_ids: frozenset[int],
        stop_check: StopCheck,
        guide: Callable[[int], constrain.Guide] | None = None,
    ) -> None:
        self.dec = decoder
        self.shared = shared.compact() if shared is not None else None
        self.shared_len = shared_len
        self.reuse = reuse
        self.stop_ids = stop_ids
        self.stop_check = stop_check
        self.pending = deque(rows)
        width = min(slots, len(rows))
        longest = max(len(r.ids) for r in list(rows)[:width]) - shared_len
        self.room = room
        self.cache = decoder.new_cache(width, longest + room)
        self.slots: list[Row | None] = [None] * width
        self.held: list[list[int]] = [[] for _ in range(width)]
        """Tokens each slot's cache holds past the shared prefix, as far as they are valid."""
        self.feed: list[list[int]] = [[0] for _ in range(width)]
        self.guide = guide(width) if guide is not None else None

    def run(self) -> None:
        for slot in range(len(self.slots)):
            self._admit(slot)
        while any(r is not None and r.finish is None for r in self.slots):
            self._drop_idle()
            self._fit_capacity()
            logits = self.dec.extend(self.feed, self.cache, self.shared)
            for slot, row in enumerate(self.slots):
                if row is not None and row.finish is None:
                    self.held[slot] += self.feed[slot]
                else:  # an idle slot (nothing waits to take it): what it was fed is not kept
                    self.cache.lengths[slot] = 0
            if self.guide is not None:
                self.guide.mask(logits)
            chosen = logits.argmax(dim=-1).tolist()
            now = time.perf_counter()
            for slot, token in enumerate(chosen):
                row = self.slots[slot]
                if row is None or row.finish is not None:
                    self.feed[slot] = [token]  # an idle slot is fed something; it is not kept
                    continue
                self._choose(slot, row, token, now)
                if row.finish is not None:
                    self._admit(slot)
                    if self.slots[slot] is row:  # nothing waited: the slot idles from now on
                        self.held[slot] = []

    def _admit(self, slot: int) -> None:
        """Prefill the next waiting row into ``slot`` and make its first choice."""
        if not self.pending:
            return
        row = self.pending.popleft()
        suffix = row.ids[self.shared_len :]
        source, keep = slot, 0
        if self.reuse:  # the slot whose held tokens agree longest with this row (this slot first)
            for other in [slot, *range(len(self.slots))]:
                common = common_prefix(self.held[other], suffix)
                if common > keep:
                    source, keep = other, common
            keep = min(keep, len(suffix) - 1)
        self.cache.reserve(len(suffix) + self.room)
        if source != slot:
            self.cache.copy_prefix(source, slot, keep)
        else:
            self.cache.lengths[slot] = keep
        logits = self.dec.prefill(suffix[keep:], self.cache.row(slot), self.shared)
        assert logits is not None
        self.held[slot] = list(suffix)
        row.reused = self.shared_len + keep
        self.slots[slot] = row
        if self.guide is not None:
            self.guide.reset(slot)
            self.guide.mask(logits, rows=[slot])
        self._choose(slot, row, int(logits[0].argmax()), time.perf_counter())
        if row.finish is not None:
            self._admit(slot)

    def _choose(self, slot: int, row: Row, token: int, now: float) -> None:
        """Take ``token`` into ``row``, then the tokens the grammar forces after it (fed together next)."""
        finish, fed = self._advance(slot, row, token)
        row.finish, row.finished_at = finish, now
        self.feed[slot] = fed

    def _advance(self, slot: int, row: Row, token: int) -> tuple[str | None, list[int]]:
        if token in self.stop_ids:
            return "stop", [token]
        row.out.append(token)
        fed = [token]
        if self.guide is not None:
            if self.guide.advance(slot, token):
                return "stop", fed
            forced = self.guide.forced(slot)[: max(0, row.budget - len(row.out))]
            if forced:
                row.out.extend(forced)
                fed.extend(forced)
                if self.guide.advance_all(slot, forced):
                    return "stop", fed
        elif self.stop_check(row.out):
            return "stop", fed
        return ("length" if len(row.out) >= row.budget else None), fed

    def _fit_capacity(self) -> None:
        """Give back capacity the live rows no longer need (a long prompt or an answer that looped to
        ``max_tokens`` grew it, and every step reads all of it): once a third of it is slack, cut it to the
        longest live row plus room. Idle slots keep what still fits."""
        live = [s for s, r in enumerate(self.slots) if r is not None and r.finish is None]
        need = int(self.cache.lengths[live].max()) + self.room
        need = -(-need // CAPACITY_STEP) * CAPACITY_STEP
        if need <= self.cache.capacity * 2 // 3:
            self.cache.shrink(need)
            self.held = [held[:need] for held in self.held]

    def _drop_idle(self) -> None:
        """With nothing waiting, drop finished rows from the batch once a quarter of it idles."""
        live = [s for s, r in enumerate(self.slots) if r is not None and r.finish is None]
        if self.pending or len(live) > 0.75 * len(self.slots):
            return
        self.cache.select(live)
        if self.guide is not None:
            self.guide.select(live)
        self.slots = [self.slots[s] for s in live]
        self.held = [self.held[s] for s in live]
        self.feed = [self.feed[s] for s in live]
