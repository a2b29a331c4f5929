"""The evaluation's configurations (paper 5.1.3) and ablations (paper 5.3), and the samples they make.

A configuration decides only what the prompt shows in place of the Routine; trajectories, tools and
expected calls are the same for all of them:

- ``no_routine``: no Routine at all (the model plans by itself);
- ``routine_flat``: the unbranched variant of the query's Routine that the query takes (paper "w/o Branch");
- ``routine_branch``: the whole branching Routine (paper "w/ Branch"), the base of every ablation;
- ``io``: the branching Routine with each step's input/output descriptions (paper 5.3.1);
- ``no_tool_names``: the branching Routine without tool names (paper 5.3.1);
- ``draft``: the user's draft text instead of the expert Routine (paper 5.3.2);
- ``candidates_k``: the right Routine and ``k - 1`` others of the scenario, in a seeded shuffled order, each
  under a header line with its name and description (paper 5.3.3).

``e2e`` is not a prompt configuration: it runs whole queries against the live servers (``evals.runner``)
with the branching Routine.

Two protocols, always labelled: ``tools_in_prompt="all"`` is the paper's (every downstream tool listed, as in
its table 2), ``"routine"`` the product's (the tools of the Routines shown: the union for several candidates,
the query's Routine for a user draft, every tool without a Routine).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from evals.decompose import DEFAULT_SHUFFLE, Sample, Shuffle, Trajectory, decompose
from routines.backends.base import ToolSpec
from routines.errors import CallerError
from routines.flatten import flatten, taken_variant
from routines.model import Routine
from routines.prompt import PromptOptions

Source = Literal["none", "flat", "branch", "draft", "candidates"]
Group = Literal["main", "components", "generation", "quantity", "e2e"]


@dataclass(frozen=True)
class EvalConfig:
    name: str
    title: str
    """The paper's name for it (table headers)."""
    source: Source
    group: Group
    io: bool = False
    tool_names: bool = True
    candidates: int = 1

    @property
    def options(self) -> PromptOptions:
        return PromptOptions(with_routine=self.source != "none", io=self.io, tool_names=self.tool_names)

    @property
    def end_to_end(self) -> bool:
        return self.group == "e2e"


_ALL = [
    EvalConfig("no_routine", "No Routine", "none", "main"),
    EvalConfig("routine_branch", "Routine w/ Branch", "branch", "main"),
    EvalConfig("routine_flat", "Routine w/o Branch", "flat", "main"),
    EvalConfig("io", "Routine w/ I/O Params", "branch", "components", io=True),
    EvalConfig("no_tool_names", "Routine w/o Tools", "branch", "components", tool_names=False),
    EvalConfig("draft", "User Draft", "draft", "generation"),
    EvalConfig("candidates_2", "2 Routines", "candidates", "quantity", candidates=2),
    EvalConfig("candidates_3", "3 Routines", "candidates", "quantity", candidates=3),
    EvalConfig("candidates_5", "5 Routines", "candidates", "quantity", candidates=5),
    EvalConfig("e2e", "End to end", "branch", "e2e"),
]
CONFIGS: dict[str, EvalConfig] = {c.name: c for c in _ALL}
MAIN_CONFIGS = ("no_routine", "routine_branch", "routine_flat")
STEP_CONFIGS = tuple(c.name for c in _ALL if not c.end_to_end)


def resolve_configs(spec: str) -> list[EvalConfig]:
    """``all`` (every per-step configuration), ``main`` (the paper's three), or a comma-separated list."""
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if part == "all":
            names += STEP_CONFIGS
        elif part == "main":
            names += MAIN_CONFIGS
        elif part in CONFIGS:
            names.append(part)
        elif part:
            known = ", ".join([*CONFIGS, "main", "all"])
            raise CallerError(f"unknown configuration {part!r}; use one of {known}")
    if not names:
        raise CallerError("no configuration given; use e.g. --config routine_branch or --config all")
    return [CONFIGS[n] for n in dict.fromkeys(names)]


@dataclass(frozen=True)
class RoutineCatalog:
    """A scenario's Routines as the configurations need them."""

    routines: dict[str, Routine]
    """Branching Routines by id."""
    variants: dict[str, Routine]
    """Flattened variants by variant id (``hr.salary/3-1``; an unbranched Routine under its own id)."""
    drafts: dict[str, str]

    @classmethod
    def build(cls, routines: Mapping[str, Routine], drafts: Mapping[str, str | None] | None = None) -> RoutineCatalog:
        variants = {v.id or "": v for r in routines.values() for v in flatten(r)}
        return cls(dict(routines), variants, {k: v for k, v in (drafts or {}).items() if v})

    @classmethod
    def from_scenario(cls, scenario: Any) -> RoutineCatalog:
        routines = scenario.routine_map()
        return cls.build(routines, {rid: scenario.draft(rid) for rid in routines})

    def routine(self, routine_id: str) -> Routine:
        if routine_id not in self.routines:
            raise CallerError(f"the scenario has no Routine {routine_id!r} (it has {', '.join(sorted(self.routines))})")
        return self.routines[routine_id]

    def flat(self, traj: Trajectory) -> Routine:
        """The unbranched variant the trajectory took: the query's ``variant``, else read off its steps."""
        if traj.variant and traj.variant in self.variants:
            return self.variants[traj.variant]
        vid = taken_variant(self.routine(traj.routine_id), [c.step for c in traj.calls])
        if vid not in self.variants:
            raise CallerError(f"query {traj.query_id}: no flattened variant {vid!r} of {traj.routine_id}")
        return self.variants[vid]

    def draft(self, routine_id: str) -> str:
        if routine_id not in self.drafts:
            raise CallerError(
                f"the scenario has no user draft for Routine {routine_id!r}; add drafts/{routine_id}.md "
                "or leave out the 'draft' configuration"
            )
        return self.drafts[routine_id].strip()

    def candidates(self, traj: Trajectory, k: int, seed: int) -> list[Routine]:
        """The right Routine and ``k - 1`` others, in an order seeded by ``seed`` and the query."""
        right = self.routine(traj.routine_id)
        others = sorted(rid for rid in self.routines if rid != traj.routine_id)
        if k - 1 > len(others):
            raise CallerError(
                f"candidates_{k} needs {k} Routines but the scenario has {len(self.routines)}; use fewer candidates"
            )
        rng = random.Random(f"{seed}:{traj.query_id}:candidates")
        shown = [right, *(self.routines[rid] for rid in rng.sample(others, k - 1))]
        rng.shuffle(shown)
        return shown

    def shown(self, config: EvalConfig, traj: Trajectory, seed: int) -> list[Routine | str]:
        """What the prompt shows in place of the Routine under ``config``."""
        if config.source == "none":
            return []
        if config.source == "flat":
            return [self.flat(traj)]
        if config.source == "draft":
            return [self.draft(traj.routine_id)]
        if config.source == "candidates":
            return list(self.candidates(traj, config.candidates, seed))
        return [self.routine(traj.routine_id)]


def build_samples(
    config: EvalConfig,
    trajectories: Sequence[Trajectory],
    tools: Sequence[ToolSpec],
    catalog: RoutineCatalog,
    *,
    seed: int = 0,
    shuffle: Shuffle = DEFAULT_SHUFFLE,
    tools_in_prompt: str = "routine",
) -> list[Sample]:
    """The per-step samples of ``trajectories`` under ``config`` and a protocol (``tools_in_prompt``)."""
    if config.end_to_end:
        raise CallerError("e2e runs whole queries, not per-step samples; use evals.runner.run_end_to_end")
    if tools_in_prompt not in ("all", "routine"):
        raise CallerError(f"unknown tools_in_prompt {tools_in_prompt!r}; use routine or all")

    def listed(traj: Trajectory) -> list[str] | None:
        if tools_in_prompt == "all" or config.source == "none":
            return None
        shown = catalog.shown(config, traj, seed)
        routines = [r for r in shown if isinstance(r, Routine)] or [catalog.routine(traj.routine_id)]
        return [t for r in routines for t in r.tools()]

    return decompose(
        trajectories, tools, routines=lambda t: catalog.shown(config, t, seed), options=config.options, seed=seed,
        shuffle=shuffle, config=config.name, listed=listed,
    )
