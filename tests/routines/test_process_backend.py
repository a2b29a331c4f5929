"""``ProcessBackend`` in real spawned child processes, serving cheap backends: requests round-trip, the
child's exceptions reach the parent with their traceback, a dead child gives a clear error, and closing
leaves no process behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest

from routines.backends import create_backend
from routines.backends.base import Constraint, Message, ToolSpec
from routines.backends.process import ProcessBackend, WorkerError, close_all, start_all
from tests.fixtures.worker_backends import echo_backend

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SEARCH = ToolSpec("search_employee", "Find an employee", {"type": "object", "properties": {"name": {"type": "string"}}})


def ask(text: str) -> list[Message]:
    return [Message("system", "You are an echo."), Message("user", text)]


def gone(pid: int) -> bool:
    """No such process, not even a zombie waiting to be reaped."""
    return not Path(f"/proc/{pid}").exists()


async def test_complete_and_complete_batch_round_trip_through_the_child() -> None:
    async with ProcessBackend(echo_backend) as worker:
        assert worker.name == "echo-batching" and worker.batches is True
        assert worker.pid is not None and worker.pid != os.getpid()
        one = await worker.complete(ask("hello"), constraint=Constraint(tools=(SEARCH,)), max_tokens=7)
        assert one.text == "hello" and one.backend == "echo-batching"
        assert one.meta == {"pid": worker.pid, "max_tokens": 7, "tools": ["search_employee"]}
        many = await worker.complete_batch([ask("a"), ask("b"), ask("c")], max_tokens=3)
        assert [c.text for c in many] == ["a", "b", "c"]
        assert {c.meta["pid"] for c in many} == {worker.pid} and many[0].meta["tools"] is None


async def test_a_backend_that_does_not_batch_says_so() -> None:
    async with ProcessBackend(create_backend, kind="scripted", replies=["first", "second"]) as worker:
        assert (worker.name, worker.batches) == ("scripted", False)
        assert [c.text for c in await worker.complete_batch([ask("x"), ask("y")])] == ["first", "second"]


async def test_an_exception_in_the_child_is_raised_in_the_parent_with_its_traceback() -> None:
    async with ProcessBackend(create_backend, kind="scripted", replies=["only one"]) as worker:
        assert (await worker.complete(ask("x"))).text == "only one"
        with pytest.raises(WorkerError, match="RuntimeError: ScriptedBackend ran out of replies") as raised:
            await worker.complete(ask("y"))
        assert "worker traceback" in str(raised.value) and "scripted.py" in str(raised.value)

    async with ProcessBackend(echo_backend) as worker:  # the worker goes on serving after an error
        with pytest.raises(WorkerError, match="ValueError: asked to fail"):
            await worker.complete(ask("fail"))
        assert (await worker.complete(ask("still here"))).text == "still here"


async def test_a_factory_that_fails_fails_start() -> None:
    worker = ProcessBackend(create_backend, kind="no-such-kind")
    with pytest.raises(WorkerError, match="could not start its backend: ValueError: unknown backend 'no-such-kind'"):
        await worker.start()
    await worker.aclose()
    assert worker.pid is not None and gone(worker.pid)


async def test_start_all_starts_workers_together_and_raises_the_first_failure() -> None:
    good, bad = ProcessBackend(echo_backend), ProcessBackend(create_backend, kind="no-such-kind")
    try:
        with pytest.raises(WorkerError, match="unknown backend 'no-such-kind'"):
            await start_all([good, bad, object()])  # not a worker: left alone
        assert good.batches is True and (await good.complete(ask("up"))).text == "up"
    finally:
        await close_all([good, bad])
    assert good.process is not None and good.process.exitcode == 0


async def test_a_killed_child_gives_a_clear_error() -> None:
    async with ProcessBackend(echo_backend) as worker:
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(WorkerError, match=r"died with exit code -9 \(killed by SIGKILL; out of memory\?\)"):
            await worker.complete(ask("anyone?"))
        with pytest.raises(WorkerError, match="died with exit code -9"):  # and every later call says the same
            await worker.complete_batch([ask("anyone?")])


async def test_a_child_killed_during_a_request_fails_that_request() -> None:
    async with ProcessBackend(echo_backend) as worker:
        pid = worker.pid
        assert pid is not None

        async def kill_soon() -> None:
            await anyio.sleep(0.5)
            os.kill(pid, signal.SIGKILL)

        async with anyio.create_task_group() as tg:
            tg.start_soon(kill_soon)
            with pytest.raises(WorkerError, match="died with exit code -9"):
                await worker.complete(ask("sleep 30"))


async def test_aclose_stops_the_child_and_leaves_no_zombie() -> None:
    worker = await ProcessBackend(echo_backend).start()
    pid = worker.pid
    assert pid is not None and not gone(pid)
    await worker.aclose()
    assert worker.process is not None and worker.process.exitcode == 0  # it exited when asked
    assert gone(pid)
    with pytest.raises(WorkerError, match="closed"):
        await worker.complete(ask("late"))


async def test_a_cancelled_request_kills_the_busy_child() -> None:
    async with ProcessBackend(echo_backend) as worker:
        pid = worker.pid
        assert pid is not None
        with anyio.move_on_after(0.5):
            await worker.complete(ask("sleep 30"))
        with pytest.raises(WorkerError, match="stopped while it was answering"):
            await worker.complete(ask("next"))
    assert worker.process is not None and worker.process.exitcode == -signal.SIGKILL and gone(pid)
