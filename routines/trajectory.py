"""One record of a run (design section 3): what the executor produces, the run log stores, evaluation
samples and training records are cut from.

- :class:`StepRecord`: one *attempt* at a step, as it happened (a model reply that was refused, a bound
  call, a tool error): the audit trail.
- :class:`Call`: one *completed* step: the call as the model wrote it (memory keys for stored values), what
  the tool got, what came back and how the model was shown it. Made from the attempt that succeeded.
- :class:`Trajectory`: a query and its calls, with the system parameters, inputs and answer of the run.

The conversation at step k is :func:`routines.prompt.build_messages` over ``trajectory.calls[:k]``: the
executor, the evaluation's per-step samples and the training records all build it that way, so the text a
model is trained and evaluated on is the text it sees at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from routines.calls import ToolCall


@dataclass
class StepRecord:
    """One attempt at one step: a model call (possibly refused), or a bound call made without the model."""

    step: str | None
    source: str  # "model" or "bound"
    attempt: int = 0
    raw_output: str | None = None
    tool: str | None = None
    arguments: dict[str, Any] | None = None
    """As the model wrote them (bound values overlaid); ``extra["model_arguments"]`` keeps the model's own."""
    resolved_arguments: dict[str, Any] | None = None
    result: Any = None
    error: str | None = None
    error_kind: str | None = None  # model | tool | downstream | binding
    prompt_chars: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    model_latency_s: float = 0.0
    tool_latency_s: float = 0.0
    observation: str | None = None
    """The result as the model was shown it (set when the step completed)."""
    next_tools: tuple[str, ...] = ()
    """The tools the Routine allowed at this step (several at a branch point)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def completed(self) -> bool:
        """The attempt that made its step: no error, and its result was shown to the model."""
        return self.error is None and self.observation is not None


@dataclass(frozen=True)
class Call:
    """One completed step of a run."""

    step: str
    tool: str
    arguments: dict[str, Any]
    """As the model writes them: stored values appear as their ``memory_*`` keys."""
    observation: str
    """The result as the model was shown it (the next turn of the conversation)."""
    resolved_arguments: dict[str, Any] | None = None
    """What the tool got (``None`` where only the model's side was kept, as in the evaluation cache)."""
    result: Any = None
    source: str = "bound"
    next_tools: tuple[str, ...] = ()
    """The tools the Routine allowed at this step: what the ``next`` constraint admits."""
    model_arguments: dict[str, Any] | None = None
    """What the model wrote, where the Routine's bound values replaced some of it."""
    free_text: tuple[str, ...] = ()
    """Gold annotation (evaluation): parameters scored by presence and type only."""

    @classmethod
    def from_attempt(cls, rec: StepRecord) -> Call:
        if not rec.completed or rec.step is None or rec.tool is None:
            raise ValueError(f"attempt at step {rec.step} did not complete; only completed attempts are calls")
        return cls(
            step=rec.step, tool=rec.tool, arguments=dict(rec.arguments or {}), observation=rec.observation or "",
            resolved_arguments=rec.resolved_arguments, result=rec.result, source=rec.source,
            next_tools=tuple(rec.next_tools), model_arguments=rec.extra.get("model_arguments"),
        )

    @property
    def call(self) -> ToolCall:
        """The call as the model's turn of the conversation shows it."""
        return ToolCall(self.tool, self.arguments)

    def as_dict(self) -> dict[str, Any]:
        """JSON form (``routine run --json``, the evaluation cache); the two annotations appear only when set."""
        out: dict[str, Any] = {
            "step": self.step, "name": self.tool, "arguments": self.arguments,
            "resolved_arguments": self.resolved_arguments, "result": self.result, "observation": self.observation,
            "source": self.source, "next_tools": list(self.next_tools),
        }
        if self.model_arguments is not None:
            out["model_arguments"] = self.model_arguments
        if self.free_text:
            out["free_text"] = list(self.free_text)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Call:
        return cls(
            step=str(data["step"]), tool=data["name"], arguments=dict(data["arguments"]),
            observation=data.get("observation") or "", resolved_arguments=data.get("resolved_arguments"),
            result=data.get("result"), source=data.get("source") or "bound",
            next_tools=tuple(data.get("next_tools") or ()), model_arguments=data.get("model_arguments"),
            free_text=tuple(data.get("free_text") or ()),
        )


@dataclass(frozen=True)
class Trajectory:
    """A query and the calls that answered it."""

    query: str
    calls: tuple[Call, ...]
    routine_id: str | None = None
    system: dict[str, Any] = field(default_factory=dict)
    """System parameters as the run had them (``user_id``)."""
    inputs: dict[str, Any] = field(default_factory=dict)
    answer: str | None = None
    query_id: str = ""
    variant: str | None = None
    """The unbranched variant of the Routine the run took (``routines.flatten.variant_id``), when known."""

    def with_labels(self, *, query_id: str | None = None, variant: str | None = None) -> Trajectory:
        return replace(self, query_id=self.query_id if query_id is None else query_id,
                       variant=self.variant if variant is None else variant)

    def as_dict(self) -> dict[str, Any]:
        return {
            "query_id": self.query_id, "query": self.query, "routine_id": self.routine_id, "variant": self.variant,
            "system": self.system, "inputs": self.inputs, "answer": self.answer,
            "calls": [c.as_dict() for c in self.calls],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trajectory:
        return cls(
            query=data["query"], calls=tuple(Call.from_dict(c) for c in data["calls"]),
            routine_id=data.get("routine_id"), system=dict(data.get("system") or {}),
            inputs=dict(data.get("inputs") or {}), answer=data.get("answer"), query_id=str(data.get("query_id") or ""),
            variant=data.get("variant"),
        )
