"""``ProcessBackend``: a backend served from a child process of its own.

On a CPU, torch gains little from a second thread on one model (1.17x with 2 threads on 2 cores), while two
processes with one thread each decode side by side at nearly twice the rate. A ``ProcessBackend`` builds
the real backend in a child started with ``spawn`` (never ``fork``: torch and OpenMP do not survive it) and
forwards ``complete`` / ``complete_batch`` to it over a pipe; the evaluation runner gives each worker a lane
of its own (``evals.runner.run_samples`` with several backends).

The backend is named by a picklable *factory*, a module-level callable and its keyword arguments, because
the child imports it afresh::

    from routines.backends import create_backend

    async with ProcessBackend(create_backend, kind="local", threads=1, dtype="bfloat16") as worker:
        completion = await worker.complete(messages)

The child builds the backend once and, with ``warm=True``, loads it before reporting ready (it touches
``backend.loaded``, which makes ``TransformersBackend`` load its model), so :meth:`ProcessBackend.start` of
several workers lets their loads overlap. An exception in the child is raised in the parent as a
:class:`WorkerError` carrying the child's traceback, except a :class:`routines.errors.CallerError` (the request
must change, say a prompt too long: :class:`routines.errors.PromptTooLong`), which is raised as itself; a child that dies (crash, out of memory) makes the
pending call raise a :class:`WorkerError` with its exit code.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.to_thread

from routines.backends.base import BaseBackend, Completion, Constraint, Message
from routines.errors import CallerError, WorkerError

Factory = Callable[..., Any]
"""A module-level callable returning a backend; it must be importable by name in a fresh interpreter."""

EXIT_TIMEOUT_S = 10.0
"""How long :meth:`ProcessBackend.aclose` waits for a worker to exit before it kills it."""


# ---- the child --------------------------------------------------------------------------------------


def _describe(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__qualname__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
        "caller_error": exc if isinstance(exc, CallerError) else None,  # raised as itself in the parent
    }


def _batches(backend: Any) -> bool:
    """True when the backend's class overrides ``complete_batch`` (it batches for real)."""
    method = getattr(type(backend), "complete_batch", None)
    return method is not None and method is not BaseBackend.complete_batch


def _serve(conn: Connection, factory: Factory, kwargs: dict[str, Any], warm: bool) -> None:
    """The worker's main function: build the backend, say ready, answer requests until told to exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the parent decides
    sys.stdout = sys.stderr  # stdout may belong to a protocol (stdio MCP) in the parent
    try:
        anyio.run(_serve_async, conn, factory, kwargs, warm)
    finally:
        conn.close()


async def _serve_async(conn: Connection, factory: Factory, kwargs: dict[str, Any], warm: bool) -> None:
    try:
        backend = factory(**kwargs)
        if backend is None:
            raise ValueError(f"{getattr(factory, '__name__', factory)!s}({kwargs}) returned no backend")
        if warm:
            getattr(backend, "loaded", None)  # TransformersBackend loads its model on first touch
    except Exception as exc:  # noqa: BLE001 - whatever went wrong is raised in the parent
        conn.send(("error", _describe(exc)))
        return
    conn.send(("ready", {"name": str(getattr(backend, "name", "backend")), "batches": _batches(backend)}))
    try:
        while True:
            try:
                op, args = conn.recv()
            except EOFError:  # the parent is gone
                return
            if op == "exit":
                return
            try:
                reply: tuple[str, Any] = ("ok", await _answer(backend, op, args))
            except Exception as exc:  # noqa: BLE001 - raised in the parent with this traceback
                reply = ("error", _describe(exc))
            try:
                conn.send(reply)
            except OSError:  # the parent is gone
                return
            except Exception as exc:  # noqa: BLE001 - the answer does not pickle (nothing was written)
                conn.send(("error", _describe(exc)))
    finally:
        await backend.aclose()


async def _answer(backend: Any, op: str, args: dict[str, Any]) -> Any:
    if op == "complete":
        return await backend.complete(args["messages"], constraint=args["constraint"], max_tokens=args["max_tokens"])
    if op == "complete_batch":
        return await backend.complete_batch(
            args["conversations"], constraint=args["constraint"], max_tokens=args["max_tokens"]
        )
    raise ValueError(f"unknown request {op!r}")


# ---- the parent -------------------------------------------------------------------------------------


def _exit_text(code: int | None) -> str:
    if code is None:
        return "an unknown exit code"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = "; out of memory?" if -code == signal.SIGKILL else ""
        return f"exit code {code} (killed by {name}{hint})"
    return f"exit code {code}"


class ProcessBackend(BaseBackend):
    """``factory(**kwargs)`` served from a spawned child process; one request at a time.

    ``name`` is the wrapped backend's once started (``"process"`` before). ``batches`` says whether the
    wrapped backend batches for real (its class overrides ``complete_batch``); ``None`` before start.
    ``warm``: load the backend (``backend.loaded``) before reporting ready. Requests start the worker if
    :meth:`start` was not awaited; use it (or ``async with``) to control when the load happens.
    """

    name = "process"

    def __init__(self, factory: Factory, /, *, warm: bool = True, **kwargs: Any) -> None:
        self.factory = factory
        self.kwargs = kwargs
        self.warm = warm
        self.batches: bool | None = None
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._lock = anyio.Lock()
        self._failure: str | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"ProcessBackend({getattr(self.factory, '__name__', self.factory)}, pid={self.pid}, name={self.name!r})"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def process(self) -> BaseProcess | None:
        """The worker process (``None`` before :meth:`start`)."""
        return self._process

    async def start(self) -> Self:
        """Spawn the worker and wait until its backend is built (and loaded, with ``warm``); idempotent."""
        async with self._lock:
            self._check_usable()
            if self._process is not None:
                return self
            ctx = multiprocessing.get_context("spawn")
            parent, child = ctx.Pipe()
            process = ctx.Process(
                target=_serve, args=(child, self.factory, self.kwargs, self.warm), daemon=True,
                name=f"routine-worker-{getattr(self.factory, '__name__', 'backend')}",
            )
            try:
                process.start()
            finally:
                child.close()  # the parent keeps only its end: the child's death then reads as end of file
            self._process, self._conn = process, parent
            status, payload = await self._exchange(None)
            if status != "ready":
                self._failure = "the worker could not start its backend"
                self._kill()
                raise WorkerError(self._remote_text("could not start its backend", payload))
            self.name = payload["name"]
            self.batches = bool(payload["batches"])
            return self

    async def complete(
        self, messages: Sequence[Message], *, constraint: Constraint | None = None, max_tokens: int = 512
    ) -> Completion:
        args = {"messages": list(messages), "constraint": constraint, "max_tokens": max_tokens}
        result: Completion = await self._request("complete", args)
        return result

    async def complete_batch(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        constraint: Constraint | None = None,
        max_tokens: int = 512,
    ) -> list[Completion]:
        args = {"conversations": [list(c) for c in conversations], "constraint": constraint, "max_tokens": max_tokens}
        result: list[Completion] = await self._request("complete_batch", args)
        return result

    async def aclose(self) -> None:
        """Ask the worker to exit; kill it if it does not within :data:`EXIT_TIMEOUT_S` (or at once, when a
        request is still in flight). Idempotent."""
        if self._closed:
            return
        self._closed = True
        process, conn = self._process, self._conn
        if process is None or conn is None:
            return
        if self._lock.locked():  # a request or a start is in flight in another task: nobody wants its answer
            self._kill()
        else:
            try:
                conn.send(("exit", None))
            except OSError:
                pass
        with anyio.CancelScope(shield=True):  # also when the run was cancelled (Ctrl-C): reap the worker
            await anyio.to_thread.run_sync(self._reap, EXIT_TIMEOUT_S)

    async def __aenter__(self) -> Self:
        try:
            return await self.start()
        except BaseException:
            await self.aclose()
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # ---- plumbing

    async def _request(self, op: str, args: dict[str, Any]) -> Any:
        await self.start()
        async with self._lock:
            self._check_usable()
            status, payload = await self._exchange((op, args))
        if status == "error":
            if isinstance(payload.get("caller_error"), CallerError):
                raise payload["caller_error"]
            raise WorkerError(self._remote_text("raised", payload))
        return payload

    def _check_usable(self) -> None:
        if self._closed:
            raise WorkerError("the worker process was closed")
        if self._failure is not None:
            raise WorkerError(self._failure)

    async def _exchange(self, request: tuple[str, Any] | None) -> tuple[str, Any]:
        """Send ``request`` (``None``: only wait for the next message) and wait for the reply in a thread.
        Cancelled while waiting, the worker is killed: it is busy with work nobody will read."""
        try:
            return await anyio.to_thread.run_sync(self._roundtrip, request, abandon_on_cancel=True)
        except anyio.get_cancelled_exc_class():
            self._failure = "the worker process was stopped while it was answering a request"
            self._kill()
            raise
        except WorkerError as exc:
            self._failure = str(exc)
            raise

    def _roundtrip(self, request: tuple[str, Any] | None) -> tuple[str, Any]:
        process, conn = self._process, self._conn
        assert process is not None and conn is not None
        try:
            if request is not None:
                conn.send(request)
            while True:
                ready = wait([conn, process.sentinel])
                if conn in ready or conn.poll():
                    reply: tuple[str, Any] = conn.recv()
                    return reply
                if process.sentinel in ready:
                    break
        except (EOFError, OSError):
            pass
        process.join(1.0)
        raise WorkerError(f"the worker process {process.pid} ({self.name}) died with {_exit_text(process.exitcode)}")

    def _remote_text(self, what: str, payload: dict[str, Any]) -> str:
        return (
            f"the worker process {self.pid} ({self.name}) {what}: {payload['type']}: {payload['message']}\n\n"
            f"worker traceback:\n{payload['traceback']}"
        )

    def _kill(self) -> None:
        if self._process is not None and self._process.exitcode is None:
            self._process.kill()

    def _reap(self, timeout: float) -> None:
        process, conn = self._process, self._conn
        assert process is not None and conn is not None
        process.join(timeout)
        if process.exitcode is None:
            process.terminate()
            process.join(1.0)
        if process.exitcode is None:
            process.kill()
            process.join()
        conn.close()


async def start_all(backends: Sequence[Any]) -> None:
    """Start every :class:`ProcessBackend` among ``backends`` at once (their loads overlap); others are left
    as they are. When some cannot start, the first one's :class:`WorkerError` is raised once all are done."""
    failures: list[WorkerError] = []

    async def start(worker: ProcessBackend) -> None:
        try:
            await worker.start()
        except WorkerError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as tg:
        for backend in backends:
            if isinstance(backend, ProcessBackend):
                tg.start_soon(start, backend)
    if failures:
        raise failures[0]


async def close_all(backends: Sequence[Any]) -> None:
    """Close every backend at once (a worker takes a few seconds to exit)."""
    async with anyio.create_task_group() as tg:
        for backend in backends:
            tg.start_soon(backend.aclose)


__all__ = ["EXIT_TIMEOUT_S", "Factory", "ProcessBackend", "WorkerError", "close_all", "start_all"]
