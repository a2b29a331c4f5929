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
