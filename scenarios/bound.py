"""Gold trajectories made by the engine itself: a scenario's Routines run in ``bound`` mode (no model)
through the scenario's own server, by the same executor that serves users. The HR and CFB scenarios both
write their gold calls this way, so gold, evaluation samples and training records come from one engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from memory.variables import VariableMemory
from routines.executor import Executor, ExecutorConfig, RunResult
from routines.model import Routine


class GoldRunError(RuntimeError):
    """A bound run over the scenario's own data failed: the scenario (Routine, query or data) is broken."""


def bound_executor(hub: Any) -> Executor:
    """An executor that runs fully bound Routines without a model."""
    return Executor(hub, None, ExecutorConfig(mode="bound"), variables=VariableMemory)


async def run_bound(executor: Executor, routine: Routine, record: Mapping[str, Any], label: str) -> RunResult:
    """Run ``record`` (a query record: ``query``, ``inputs``, ``user_id`` or ``system``) with ``routine``;
    a failed run raises GoldRunError naming ``label``."""
    result = await executor.run(routine, str(record["query"]), inputs=record.get("inputs") or {},
                                user_id=record.get("user_id"), system=record.get("system"))
    if not result.ok:
        raise GoldRunError(f"{label}: the bound run failed: {result.error}")
    return result
