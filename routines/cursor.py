"""Where a run stands in its Routine, and which steps may come next.

Main steps run in order; at a branch step exactly one branch is taken, its steps in order, then the next
main step. A finish step (main or in a branch) ends the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from routines.bindings import BindingError, RunState, evaluate_when
from routines.conditions import ConditionSyntaxError
from routines.model import Label, Routine, Step


@dataclass
class Cursor:
    routine: Routine
    done: list[Step] = field(default_factory=list)
    _main: int = 0  # index into main_steps of the next main step
    _branch: tuple[int, int, int] | None = None  # (main number, branch, index) of the last branch step done
    finished: bool = False

    def __post_init__(self) -> None:
        # Labels parsed and branches grouped once: the executor asks at every step.
        self._labels: dict[str, Label] = {s.step: s.label for s in self.routine.steps}
        self._mains = [s for s in self.routine.steps if not self._labels[s.step].is_branch]
        self._branches: dict[int, dict[int, list[Step]]] = {self._labels[s.step].main: {} for s in self._mains}
        for step in sorted((s for s in self.routine.steps if self._labels[s.step].is_branch),
                           key=lambda s: self._labels[s.step]):
            label = self._labels[step.step]
            self._branches.setdefault(label.main, {}).setdefault(label.branch, []).append(step)

    def candidates(self) -> list[Step]:
        """The steps that may run next (several at a branch point: the first step of every branch)."""
        if self.finished:
            return []
        if self._branch is not None:
            main, branch, index = self._branch
            steps = self._branches[main].get(branch, [])
            if index < len(steps):
                return [steps[index]]
        while self._main < len(self._mains):
            step = self._mains[self._main]
            branches = self._branches[self._labels[step.step].main]
            if branches:
                return [steps[0] for _, steps in sorted(branches.items())]
            if step.type == "branch":  # a branch step without branches: nothing to run, skip it
                self._main += 1
                continue
            return [step]
        return []

    def advance(self, step: Step) -> None:
        self.done.append(step)
        label = self._labels[step.step]
        if label.is_branch:
            self._branch = (label.main, label.branch, label.index)
            steps = self._branches[label.main][label.branch]
            if label.index >= len(steps):  # the branch is over: continue after its main step
                self._branch = None
                self._main = next(i for i, s in enumerate(self._mains) if self._labels[s.step].main == label.main) + 1
        else:
            self._branch = None
            self._main = next(i for i, s in enumerate(self._mains) if s.step == step.step) + 1
        if step.type == "finish" or not self.candidates():
            self.finished = True

    def branch_point(self, step: Step) -> str | None:
        """For the last step of a branch, the main step label whose output it stands for (``{{steps.3}}``)."""
        label = self._labels[step.step]
        if label.is_branch and label.index == len(self._branches[label.main][label.branch]):
            return str(label.main)
        return None


def choose_branch(candidates: list[Step], state: RunState) -> Step | None:
    """The branch whose ``when`` holds, in order; a last branch without ``when`` is "otherwise". None when
    a condition is missing or cannot be evaluated yet (the model must choose)."""
    for i, step in enumerate(candidates):
        if step.when is None:
            return step if i == len(candidates) - 1 else None
        try:
            if evaluate_when(step.when, state):
                return step
        except (BindingError, ConditionSyntaxError):
            return None
    return None


def open_branches(candidates: list[Step], state: RunState) -> list[Step]:
    """``candidates`` without the branches whose ``when`` guard is known to be false: what a model may take.
    A guard that cannot be evaluated yet (it names something the run lacks) leaves its branch open; a last
    branch without ``when`` ("otherwise") is closed when an earlier guard holds."""
    if len(candidates) < 2:
        return list(candidates)
    out: list[Step] = []
    for i, step in enumerate(candidates):
        if step.when is None:
            taken = i == len(candidates) - 1 and any(_holds(s, state) is True for s in candidates[:i])
            if not taken:
                out.append(step)
        elif _holds(step, state) is not False:
            out.append(step)
    return out or list(candidates)


def _holds(step: Step, state: RunState) -> bool | None:
    if step.when is None:
        return None
    try:
        return bool(evaluate_when(step.when, state))
    except (BindingError, ConditionSyntaxError):
        return None
