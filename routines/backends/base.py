"""The one small interface every executor/planner model backend implements.

Messages are OpenAI-shaped (role + content). An assistant turn that made a call carries the call as
text, ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (design 4.2); a tool observation is a
``tool`` message. Backends that speak native tool calls (OpenAI, vLLM) translate at their own edge.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model sees it: name, description and JSON-schema parameters."""

    name: str
    description: str
    parameters: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    @classmethod
    def from_mcp(cls, tool: Any) -> ToolSpec:
        """From an MCP ``Tool`` (object or dict with ``inputSchema``) or a ``{name, parameters}`` dict."""
        if isinstance(tool, ToolSpec):
            return tool
        if not isinstance(tool, dict):
            tool = tool.model_dump(by_alias=True) if hasattr(tool, "model_dump") else vars(tool)
        params = tool.get("inputSchema") or tool.get("input_schema") or tool.get("parameters") or {}
        return cls(name=tool["name"], description=tool.get("description") or "", parameters=dict(params))


@dataclass(frozen=True)
class Completion:
    """What a backend produced for one request."""

    text: str
    """Raw output text. For a native tool call, the call rendered as ``<tool_call>...</tool_call>``."""
    prompt_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    backend: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Constraint:
    """Restrict decoding. ``tools``: exactly one ``<tool_call>`` to one of these tools, arguments fitting
    its schema. ``json_schema``: a bare JSON value fitting the schema. At most one is set. Backends that
    cannot enforce a constraint ignore it (and say so in ``Completion.meta["constrained"] = False``)."""

    tools: tuple[ToolSpec, ...] = ()
    json_schema: dict[str, Any] | None = None
    max_string_length: int = 256


@runtime_checkable
class Backend(Protocol):
    name: str

    async def complete(
        self, messages: Sequence[Message], *, constraint: Constraint | None = None, max_tokens: int = 512
    ) -> Completion: ...


class BaseBackend:
    """Shared helpers; ``complete_batch`` may be overridden by backends that batch for real."""

    name = "base"

    async def complete(
        self, messages: Sequence[Message], *, constraint: Constraint | None = None, max_tokens: int = 512
    ) -> Completion:  # pragma: no cover - abstract
        raise NotImplementedError

    async def complete_batch(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        constraint: Constraint | None = None,
        max_tokens: int = 512,
    ) -> list[Completion]:
        return [await self.complete(c, constraint=constraint, max_tokens=max_tokens) for c in conversations]

    async def aclose(self) -> None:
        return None


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start
