"""What an executor run is configured with, and what it needs from the world around it.

The modes and settings (:class:`ExecutorConfig`), which tools a prompt lists (:func:`prompt_tools`), and the
three things the executor is handed rather than importing (design section 2: ``routines`` imports neither
``memory`` nor ``server``): a tool hub (:class:`ToolCaller`, ``routines.hub.ToolHub``), a per-run variable
memory (:class:`VariableStore`, ``memory.variables.VariableMemory``) and a run log (:class:`RunSink`,
``memory.runlog.RunLog``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, Protocol

from routines.backends.base import ToolSpec
from routines.errors import CallerError
from routines.model import Routine
from routines.prompt import PromptOptions
from routines.trajectory import StepRecord

Mode = Literal["model", "hybrid", "bound"]
MODES: tuple[str, ...] = ("model", "hybrid", "bound")
ConstrainMode = Literal["none", "routine", "next"]
CONSTRAIN_MODES: tuple[str, ...] = ("none", "routine", "next")
ToolsInPrompt = Literal["routine", "all"]
TOOLS_IN_PROMPT: tuple[str, ...] = ("routine", "all")
MemoryLayout = Literal["fields", "nested"]


def constrain_mode(value: str | bool | None) -> ConstrainMode:
    """``none``/``routine``/``next``; booleans (the older setting) read as ``routine`` and ``none``."""
    if value is None or value is False:
        return "none"
    if value is True:
        return "routine"
    text = str(value).strip().lower()
    text = {"true": "routine", "1": "routine", "yes": "routine", "false": "none", "0": "none", "no": "none"}.get(text, text)
    if text not in CONSTRAIN_MODES:
        raise CallerError(f"unknown constraint mode {value!r}; use one of {', '.join(CONSTRAIN_MODES)}")
    return text  # type: ignore[return-value]


@dataclass(frozen=True)
class ExecutorConfig:
    mode: Mode = "model"
    max_steps: int = 16
    max_retries: int = 2
    """Bad calls fed back to the model for one step before the run fails."""
    memory_threshold: int = 256
    memory_layout: MemoryLayout = "fields"
    """How a long tool result is shown (``memory.variables.VariableMemory.nested``): ``fields`` (its short
    top-level fields) or ``nested`` (its shape, to any depth; for deep results such as ComplexFuncBench's)."""
    prompt: PromptOptions = field(default_factory=PromptOptions)
    tools_in_prompt: ToolsInPrompt = "routine"
    """``routine``: the prompt lists the Routine's tools only; ``all``: every downstream tool (the paper's
    protocol, for comparisons)."""
    constrain: ConstrainMode = "none"
    """Ask the backend to constrain decoding (when it can): ``none``, ``routine`` or ``next``."""
    tool_timeout: float = 30.0
    max_tokens: int = 384
    extract_inputs: bool = True
    """Model mode: read the Routine's inputs from the question first (one constrained model call), so that
    its ``{{inputs.*}}`` bindings hold like every other binding. Off: the model writes those values itself.
    Hybrid and bound runs always need the inputs."""
    today: str | None = None
    """The reference date (``YYYY-MM-DD``) for reading dates a question writes without a year ("25 August");
    default: the clock's. Scenarios with a fixed calendar set theirs (``scenario.json`` ``today``)."""

    @property
    def nested_memory(self) -> bool:
        return self.memory_layout == "nested"

    @property
    def reference_date(self) -> date | None:
        return date.fromisoformat(self.today) if self.today else None

    def __post_init__(self) -> None:
        object.__setattr__(self, "constrain", constrain_mode(self.constrain))
        try:
            self.reference_date  # noqa: B018 - checked once, here
        except ValueError:
            raise CallerError(f"today must be a date written YYYY-MM-DD; got {self.today!r}") from None
        if self.memory_layout not in ("fields", "nested"):
            raise CallerError(f"unknown memory_layout {self.memory_layout!r}; use fields or nested")
        if self.tools_in_prompt not in TOOLS_IN_PROMPT:
            raise CallerError(f"unknown tools_in_prompt {self.tools_in_prompt!r}; use routine or all")


def prompt_tools(routines: list[Routine], tools: Mapping[str, ToolSpec], tools_in_prompt: ToolsInPrompt) -> list[ToolSpec]:
    """The tools a prompt lists: every tool (``all``, or no Routine), else the union of the Routines' tools
    in the order the downstream servers list them."""
    if tools_in_prompt == "all" or not routines:
        return list(tools.values())
    named = {t for r in routines for t in r.tools()}
    return [spec for name, spec in tools.items() if name in named]


class ToolCaller(Protocol):
    """What the executor needs from a tool hub (``routines.hub.ToolHub`` is the real one)."""

    async def list_tools(self, refresh: bool = False) -> list[ToolSpec]: ...

    async def call(self, name: str, arguments: Mapping[str, Any], *, timeout: float | None = None) -> Any: ...


class Observed(Protocol):
    key: str
    """The key that holds the step's whole result."""
    shown: Any
    """The result as the model sees it (long values as their keys)."""
    new_keys: Mapping[str, str]
    """Each key the result added, with its preview."""


class VariableStore(Protocol):
    """One run's variable memory (paper 3.4.2; ``memory.variables.VariableMemory`` is the real one)."""

    values: Mapping[str, Any]

    def observe(self, result: Any, hint: str) -> Observed: ...

    def encode_args(self, args: Mapping[str, Any]) -> dict[str, Any]: ...

    def unknown_keys(self, value: Any) -> list[str]: ...

    def resolve_args(self, args: Mapping[str, Any], parameters: Mapping[str, Any] | None) -> dict[str, Any]: ...


class RunSink(Protocol):
    """Where runs are recorded as they happen (``memory.runlog.RunLog`` is the real one)."""

    def start_run(self, *, query: str, mode: str, routine_id: str | None = None, routine_version: int | None = None,
                  backend: str | None = None, user_id: str | None = None, inputs: dict[str, Any] | None = None,
                  system: dict[str, Any] | None = None) -> str: ...

    def log_step(self, run_id: str, rec: StepRecord) -> None: ...

    def finish_run(self, run_id: str, *, status: str, answer: str | None = None, error: str | None = None) -> None: ...
