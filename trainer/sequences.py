"""Training sequences: a distilled run (or an input-extraction example) as the token ids the model is trained
on, with the loss only on the model's own turns.

Every prompt is rendered by :func:`routines.backends.chat.encode_prompt`, the function the embedded backend
sends at run time, so the ids before call k are exactly what the executor feeds the model before call k. The
conversation is append-only, so one record is one sequence that teaches all of its calls: the ids before
call k+1 extend the ids before call k plus call k (checked; a record that breaks it is an error, not
silently trained on).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from routines.backends.base import Message
from routines.backends.chat import END_OF_TURN, encode_prompt, encode_target
from routines.inputs import extraction_messages, extraction_target, missing_inputs, readable_inputs
from routines.model import Routine
from trainer.errors import SequenceError
from trainer.sharegpt import Conversation

IGNORE = -100
"""The label of a token the loss skips (prompt tokens)."""


@dataclass(frozen=True)
class TrainSequence:
    id: str
    input_ids: list[int]
    labels: list[int]
    """``IGNORE`` on prompt tokens; the token id itself on the model's turns."""
    names: tuple[int, ...] = ()
    """Positions (in ``input_ids``) of the tokens that spell each call's tool name: the step's decision, which
    at a branch is the branch taken (:func:`trainer.loss.call_loss` can weigh them more)."""

    @property
    def targets(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)

    def __len__(self) -> int:
        return len(self.input_ids)


def build_sequence(tokenizer: Any, seq_id: str, turns: Sequence[tuple[Sequence[Message], str]]) -> TrainSequence:
    """``turns``: (the messages before the model's turn, the turn's text), in order, each prompt extending the
    one before it. The ids are the first prompt, then for every turn its target, then what the next prompt
    adds."""
    ids: list[int] = []
    labels: list[int] = []
    names: list[int] = []
    for k, (messages, target) in enumerate(turns):
        prompt = encode_prompt(tokenizer, messages)
        if prompt[: len(ids)] != ids:
            at = next(i for i, (a, b) in enumerate(zip(prompt, ids, strict=False)) if a != b) if prompt[: len(ids)] else 0
            raise SequenceError(f"{seq_id}: the prompt before turn {k} does not extend the one before it "
                                f"(first difference at token {at}); the conversation must be append-only")
        added = prompt[len(ids):]
        ids += added
        labels += [IGNORE] * len(added)
        out = encode_target(tokenizer, target)
        names += [len(ids) + i for i in name_tokens(tokenizer, target, out)]
        ids += out
        labels += out
    return TrainSequence(seq_id, ids, labels, tuple(names))


NAME_KEY = '"name": "'


def name_tokens(tokenizer: Any, target: str, ids: Sequence[int]) -> list[int]:
    """Indices into ``ids`` (``target``'s tokens, :func:`encode_target`) of the tokens that overlap the tool
    name of the call ``target`` writes; none for a turn that is not a call (an extraction reply)."""
    start = target.find(NAME_KEY)
    if start < 0:
        return []
    start += len(NAME_KEY)
    end = target.find('"', start)
    encoded = tokenizer(target + END_OF_TURN, add_special_tokens=False, return_offsets_mapping=True)
    if list(encoded["input_ids"]) != list(ids):  # the same call as encode_target; a mismatch is a bug
        raise SequenceError("the tokenizer gave other ids with offsets than without")
    return [i for i, (a, b) in enumerate(encoded["offset_mapping"]) if a < end and b > start]


def conversation_sequence(tokenizer: Any, conv: Conversation) -> TrainSequence:
    """All calls of a distilled run in one sequence."""
    return build_sequence(tokenizer, conv.id, [(conv.messages(k), conv.target(k)) for k in range(len(conv.calls))])


def extraction_sequences(
    tokenizer: Any, queries: Iterable[Mapping[str, Any]], routines: Mapping[str, Routine], today: date | None = None
) -> list[TrainSequence]:
    """One sequence per query whose Routine has inputs: the extraction prompt the executor sends
    (:func:`routines.inputs.extraction_messages`) and the known inputs as the reply, as the question can give
    them (:func:`routines.inputs.readable_inputs`: ``null`` for a value it does not write)."""
    out = []
    for query in queries:
        routine = routines.get(str(query.get("routine_id")))
        inputs = query.get("inputs") or {}
        if routine is None or not routine.inputs:
            continue
        names = missing_inputs(routine, {})
        if not names or any(n not in inputs for n in names):
            continue
        messages = extraction_messages(routine, str(query["query"]), names)
        readable = readable_inputs(routine, str(query["query"]), inputs, names, today)
        out.append(build_sequence(tokenizer, f"extract:{query.get('id')}", [(messages, extraction_target(readable, names))]))
    return out
