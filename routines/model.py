"""The Routine and its steps (paper table 1 and appendix A.1/B.2, design 4.1).

A step label is ``x`` for main step x, or ``x-n_i`` for step i of branch n of main step x. Names and
descriptions are kept on one line (runs of whitespace collapse to one space) because the natural-language
form puts each step on one line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

StepType = Literal["node", "branch", "branchnode", "finish"]

LABEL_RE = re.compile(r"^(\d+)(?:-(\d+)_(\d+))?$")
_WS = re.compile(r"\s+")


@dataclass(frozen=True, order=True)
class Label:
    """A parsed step label: ``main`` alone, or ``main``-``branch``_``index``."""

    main: int
    branch: int = 0
    index: int = 0

    @property
    def is_branch(self) -> bool:
        return self.branch > 0

    def __str__(self) -> str:
        return f"{self.main}-{self.branch}_{self.index}" if self.branch else str(self.main)

    @classmethod
    def parse(cls, text: str) -> Label:
        m = LABEL_RE.match(text.strip())
        if not m:
            raise ValueError(
                f"step label {text!r} is not of the form 'x' or 'x-n_i' (e.g. '3' or '3-1_2', step 2 of branch 1 of step 3)"
            )
        main, branch, index = m.groups()
        if branch is not None and int(branch) == 0:
            raise ValueError(f"step label {text!r}: branches are numbered from 1 ('{main}-1_{index}')")
        return cls(int(main), int(branch or 0), int(index or 0))


def _one_line(value: str | None) -> str | None:
    return None if value is None else _WS.sub(" ", value).strip()


class Step(BaseModel):
    """One step: the paper's fields plus our optional ``args`` bindings and ``when`` condition."""

    model_config = ConfigDict(extra="forbid")

    step: str = Field(description="Step label: 'x' for main step x, 'x-n_i' for step i of branch n of step x.")
    name: str = Field("", description="A concise summary of the step's purpose.")
    description: str = Field("", description="Instructions, conditions and objective of the step.")
    tool: str | None = Field(None, description="The one tool this step calls (none for a branch step).")
    type: StepType = Field("node", description="node, branch (a condition check), branchnode or finish.")
    input: str | None = Field(None, description="Natural-language description of the step's inputs.")
    output: str | None = Field(None, description="Natural-language description of the step's outputs.")
    args: dict[str, Any] | None = Field(
        None,
        description="Argument bindings: values, or templates {{inputs.x}}, {{system.x}}, {{steps.<step>.<path>}}.",
    )
    when: str | None = Field(
        None, description="Condition for entering this branch, in the safe condition language (routines.conditions)."
    )

    @field_validator("step", mode="before")
    @classmethod
    def _label(cls, value: Any) -> str:
        return str(Label.parse(str(value)))  # canonical form: "03" -> "3", "3-01_1" -> "3-1_1"

    @field_validator("name", "description", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _one_line(value) if isinstance(value, str) else value

    @field_validator("input", "output", mode="before")
    @classmethod
    def _io(cls, value: Any) -> Any:
        return (_one_line(value) or None) if isinstance(value, str) else value  # "" means not described

    @field_validator("tool", mode="before")
    @classmethod
    def _tool(cls, value: Any) -> Any:
        if isinstance(value, list):  # planners sometimes give several; validation reports it
            return ", ".join(str(v) for v in value) or None
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    @property
    def label(self) -> Label:
        return Label.parse(self.step)


class Routine(BaseModel):
    """A step-numbered plan. ``steps`` are in document order (main steps, each followed by its branches)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="Stable identifier, e.g. 'hr.salary'.")
    name: str = Field("", description="Human-readable name.")
    version: int | None = Field(None, description="Version number, assigned by the procedure store.")
    description: str = Field("", description="What the Routine is for; used for retrieval.")
    inputs: dict[str, Any] | None = Field(None, description="JSON schema of the values a caller may pass.")
    steps: list[Step] = Field(default_factory=list)

    @field_validator("name", "description", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _one_line(value) if isinstance(value, str) else value

    # ---- navigation -------------------------------------------------------------------------
    def step(self, label: str) -> Step:
        for s in self.steps:
            if s.step == label:
                return s
        raise KeyError(f"Routine {self.id or self.name!r} has no step {label!r}")

    def main_steps(self) -> list[Step]:
        return [s for s in self.steps if not s.label.is_branch]

    def branches(self, main: int) -> dict[int, list[Step]]:
        """Branch number -> its steps in order, for main step ``main``."""
        out: dict[int, list[Step]] = {}
        for s in sorted((s for s in self.steps if s.label.is_branch and s.label.main == main), key=lambda s: s.label):
            out.setdefault(s.label.branch, []).append(s)
        return out

    def tools(self) -> list[str]:
        """Tools named by the Routine, in order, without repeats."""
        seen: dict[str, None] = {}
        for s in self.steps:
            if s.tool:
                seen.setdefault(s.tool, None)
        return list(seen)

    def walk(self) -> Iterator[Step]:
        yield from self.steps

    @property
    def has_branches(self) -> bool:
        return any(s.label.is_branch for s in self.steps)

    # ---- loading ------------------------------------------------------------------------------
    @classmethod
    def from_data(cls, data: Any) -> Routine:
        """From a Routine object, or the paper's bare JSON list of steps."""
        if isinstance(data, list):
            data = {"steps": data}
        return cls.model_validate(data)

    @classmethod
    def from_file(cls, path: str | Path) -> Routine:
        """Load a Routine JSON file (an object, or the paper's list of steps)."""
        return cls.from_data(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_json(self, **kwargs: Any) -> str:
        return self.model_dump_json(exclude_none=True, indent=2, **kwargs)


def routine_json_schema() -> dict[str, Any]:
    """The JSON schema of a stored Routine (``routine schema``)."""
    return Routine.model_json_schema()
