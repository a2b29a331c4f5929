"""``SamplingBackend``: the MCP client's own model, asked through MCP sampling.

The server supplies the ``sampler``: on connections before the 2026-07-28 protocol it wraps
``ctx.session.create_message``; on 2026-07-28 connections the tool returns an ``InputRequiredResult`` with a
``CreateMessageRequest`` and the answer arrives when the client calls again (``server/sampling.py`` bridges
that to an awaitable). When the client offers neither, the server raises ``SamplingUnavailable``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from routines.backends.base import BaseBackend, Completion, Constraint, Message, Stopwatch
from routines.errors import SamplingUnavailable  # noqa: F401 - its home was here; importers still find it


@dataclass(frozen=True)
class SamplingRequest:
    """What to ask the client's model: the system prompt and the turns, user/assistant only."""

    system: str
    turns: list[tuple[str, str]]
    max_tokens: int


Sampler = Callable[[SamplingRequest], Awaitable[str]]


def to_sampling_request(messages: Sequence[Message], max_tokens: int) -> SamplingRequest:
    """MCP sampling has only user and assistant roles: tool results go as user turns, marked as such."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    turns: list[tuple[str, str]] = []
    for m in messages:
        if m.role == "system":
            continue
        role = "assistant" if m.role == "assistant" else "user"
        text = f"<tool_response>\n{m.content}\n</tool_response>" if m.role == "tool" else m.content
        if turns and turns[-1][0] == role:  # sampling wants alternating turns
            turns[-1] = (role, turns[-1][1] + "\n\n" + text)
        else:
            turns.append((role, text))
    return SamplingRequest(system=system, turns=turns, max_tokens=max_tokens)


class SamplingBackend(BaseBackend):
    name = "sampling"

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    async def complete(
        self, messages: Sequence[Message], *, constraint: Constraint | None = None, max_tokens: int = 512
    ) -> Completion:
        watch = Stopwatch()
        text = await self.sampler(to_sampling_request(messages, max_tokens))
        return Completion(text=text, latency_s=watch.elapsed, backend=self.name, meta={"constrained": False})
