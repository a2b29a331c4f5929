"""``ScriptedBackend``: replays prepared outputs. Ships in the package so users test their own Routines
the way we test ours (like pydantic-ai's ``TestModel``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from routines.backends.base import BaseBackend, Completion, Constraint, Message

Reply = str | dict[str, Any] | Callable[[Sequence[Message]], str]


def call_text(name: str, arguments: dict[str, Any]) -> str:
    """The canonical text of one call, as the executor expects a model to write it."""
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "</tool_call>"


class ScriptedBackend(BaseBackend):
    """Returns the given replies in order. A reply is raw text, a ``{"name", "arguments"}`` dict (rendered
    as a ``<tool_call>``), or a function of the conversation. Running out of replies is an error."""

    name = "scripted"

    def __init__(self, replies: Iterable[Reply] = ()) -> None:
        self.replies: list[Reply] = list(replies)
        self.requests: list[list[Message]] = []
        self.constraints: list[Constraint | None] = []

    def add(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def complete(
        self, messages: Sequence[Message], *, constraint: Constraint | None = None, max_tokens: int = 512
    ) -> Completion:
        self.requests.append(list(messages))
        self.constraints.append(constraint)
        if not self.replies:
            raise RuntimeError(f"ScriptedBackend ran out of replies after {len(self.requests) - 1} requests")
        reply = self.replies.pop(0)
        if callable(reply):
            reply = reply(messages)
        if isinstance(reply, dict):
            text = call_text(reply["name"], reply.get("arguments", {}))
        else:
            text = reply
        prompt_chars = sum(len(m.content) for m in messages)
        return Completion(text=text, prompt_tokens=prompt_chars // 4, output_tokens=len(text) // 4, backend=self.name)
