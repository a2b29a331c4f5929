"""The toy scenario (tests/fixtures/toy_scenario) for the distillation tests: its directory, and its server
in memory so most tests need no subprocess; a teacher that replays records, and a replay through the executor."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from memory.variables import VariableMemory
from routines.backends.base import Message, ToolSpec
from routines.backends.scripted import ScriptedBackend
from routines.executor import Executor, ExecutorConfig
from routines.hub import ToolHub
from routines.model import Routine
from routines.prompt import PromptOptions
from trainer.sharegpt import Conversation

TOY = Path(__file__).resolve().parents[1] / "fixtures" / "toy_scenario"


def _server_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("toy_scenario_server", TOY / "server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def toy_dir() -> Path:
    return TOY


@pytest.fixture
def toy_servers() -> dict[str, Any]:
    """The toy scenario's server, in memory."""
    return {"toy": _server_module().create_server()}


@pytest.fixture
def toy_copy(tmp_path: Path) -> Path:
    """A writable copy of the toy scenario (to change its gold or queries)."""
    return Path(shutil.copytree(TOY, tmp_path / "toy_scenario"))


def make_replay(records: Sequence[dict[str, Any]], *, fail: Sequence[str] = (), stumble: Sequence[str] = ()) -> ScriptedBackend:
    """A teacher model that makes the recorded calls; on ``fail`` queries it never makes a call, on ``stumble``
    queries its first call names a tool the Routine does not use."""
    by_query = {r["conversations"][0]["value"]: r for r in records}
    stumbled: set[str] = set()

    def reply(messages: Sequence[Message]) -> str:
        record = by_query[messages[1].content]
        if record["id"] in fail:
            return "I am not sure which tool to use."
        if record["id"] in stumble and record["id"] not in stumbled:
            stumbled.add(record["id"])
            return '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
        k = sum(1 for m in messages if m.role == "tool")
        calls = [t["value"] for t in record["conversations"] if t["from"] == "function_call"]
        return "<tool_call>" + calls[k] + "</tool_call>"

    return ScriptedBackend([reply] * 1000)


async def executor_requests(
    hub: ToolHub, routine: Routine, query: dict[str, Any], record: dict[str, Any], conv: Conversation,
    *, with_routine: bool = True, tools_in_prompt: str = "routine",
) -> list[list[Message]]:
    """Run ``query`` through the executor in model mode, the model replaying ``record``, the hub listing the
    record's tools in the record's order and then every other tool of the servers (the executor must leave
    those out when the record lists the Routine's tools only); return what the model was sent before each call."""
    teacher = make_replay([record])
    listed = {t.name for t in conv.tools}
    listing = [*conv.tools, *(t for t in await hub.list_tools() if t.name not in listed)]

    class Ordered:
        tools = listing

        async def list_tools(self, refresh: bool = False) -> list[ToolSpec]:
            return list(self.tools)

        async def call(self, name: str, arguments: Any, *, timeout: float | None = None) -> Any:
            return await hub.call(name, arguments, timeout=timeout)

    config = ExecutorConfig(mode="model", prompt=PromptOptions(with_routine=with_routine),
                            tools_in_prompt=tools_in_prompt)  # type: ignore[arg-type]
    result = await Executor(Ordered(), teacher, config, variables=VariableMemory).run(
        routine, query["query"], inputs=query.get("inputs"), user_id=query.get("user_id"))
    assert result.ok, result.error
    return teacher.requests


@pytest.fixture
def replay() -> Callable[..., ScriptedBackend]:
    return make_replay


@pytest.fixture
def replay_run() -> Callable[..., Any]:
    return executor_requests
