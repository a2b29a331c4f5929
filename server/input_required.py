"""The client's model on MCP 2026-07-28 connections: the input-required flow (SEP-2322), bridged to an awaitable.

That protocol has no server-to-client requests. A tool that needs the client's model returns an
``InputRequiredResult`` holding a ``CreateMessageRequest`` and an opaque ``request_state``; the client runs its
model and calls the same tool again with ``input_responses`` and that ``request_state``. Our executor and
planner, though, are ordinary loops that ``await`` a model. ``InputRequiredBridge`` joins the two:

- the first call starts the work (a run or a plan) in a background task, kept in a registry under a random
  token that becomes the ``request_state``, and waits for the task's next event;
- when the work asks the model, the sampler parks a future and the call returns ``InputRequiredResult``;
- the next call finds the run by its token, resolves the future with the client's answer and waits again;
- when the work ends, that call returns its result (or raises its error) and the run leaves the registry.

Progress travels as events too: the background task has no request of its own, so each call forwards the
progress the run made while it was the active call (``ctx.report_progress`` belongs to the call's task).
A run whose client stops answering fails after ``timeout`` seconds and is dropped. Runs live in this
process's memory: behind several server processes, route a client's calls to one process.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastmcp import Context
from fastmcp.exceptions import ToolError
from mcp.types import (
    CreateMessageRequest,
    CreateMessageRequestParams,
    InputRequiredResult,
    SamplingMessage,
    TextContent,
)

from routines.backends.sampling import Sampler, SamplingRequest
from routines.errors import RunFailed

log = logging.getLogger(__name__)

T = TypeVar("T")

Reporter = Callable[[float, float | None, str | None], Awaitable[None]]
"""``report(progress, total, message)``: progress of the work, forwarded to the client."""
BridgedWork = Callable[[Sampler, Reporter], Awaitable[T]]
"""The work to run: gets the sampler that asks the client's model and a progress reporter."""

DEFAULT_TIMEOUT = 300.0
DEFAULT_MAX_RUNS = 64


def create_message_request(request: SamplingRequest) -> CreateMessageRequest:
    """Our sampling request as the embedded MCP ``sampling/createMessage`` request."""
    messages = [
        SamplingMessage(role=role, content=TextContent(type="text", text=text))  # type: ignore[arg-type]
        for role, text in request.turns
    ]
    return CreateMessageRequest(
        params=CreateMessageRequestParams(
            messages=messages, system_prompt=request.system or None, max_tokens=request.max_tokens, temperature=0.0,
        )
    )


def response_text(response: Any) -> str:
    """The text of a client's ``CreateMessageResult`` (single content block or a list of blocks)."""
    content = getattr(response, "content", None)
    if content is None or not hasattr(response, "model"):
        raise ToolError(
            f"the client answered the model request with {type(response).__name__}, not a sampling result "
            "(CreateMessageResult); answer sampling/createMessage requests with the model's message"
        )
    blocks = content if isinstance(content, list) else [content]
    return "".join(getattr(block, "text", "") or "" for block in blocks)


# ---- events a run sends to the call that serves it ----------------------------------------------------
@dataclass(frozen=True)
class _Progress:
    progress: float
    total: float | None
    message: str | None


@dataclass
class _Ask:
    key: str
    request: CreateMessageRequest
    answer: asyncio.Future[str]


@dataclass(frozen=True)
class _Done:
    pass


@dataclass
class _Run:
    token: str
    tool: str
    started: float
    events: asyncio.Queue[_Progress | _Ask | _Done] = field(default_factory=asyncio.Queue)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[Any] | None = None
    pending: _Ask | None = None
    asks: int = 0


class InputRequiredBridge:
    """Runs model-needing work across the calls of the 2026-07-28 input-required flow (one per app).

    ``timeout``: seconds a run waits for the client's answer before it fails and is dropped.
    ``max_runs``: runs that may wait for their client at once; more are refused with a clear error."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, max_runs: int = DEFAULT_MAX_RUNS) -> None:
        if timeout <= 0:
            raise ValueError("the input-required timeout must be positive")
        self.timeout = timeout
        self.max_runs = max_runs
        self._runs: dict[str, _Run] = {}

    def __len__(self) -> int:
        """Runs in flight (started and not yet handed back or expired)."""
        return len(self._runs)

    async def start(self, ctx: Context, tool: str, work: BridgedWork[T]) -> T | InputRequiredResult:
        """First call: start ``work`` in the background and serve it until it ends or asks the model."""
        if len(self._runs) >= self.max_runs:
            raise ToolError(
                f"{len(self._runs)} runs are already waiting for their clients' models; try again in a moment "
                f"(abandoned runs are dropped after {self.timeout:g} s)"
            )
        run = _Run(token=secrets.token_urlsafe(18), tool=tool, started=time.monotonic())

        async def report(progress: float, total: float | None = None, message: str | None = None) -> None:
            run.events.put_nowait(_Progress(progress, total, message))

        run.task = asyncio.create_task(work(self._sampler(run), report), name=f"routine-mcp {tool} {run.token[:6]}")
        run.task.add_done_callback(lambda task: self._finished(run, task))
        self._runs[run.token] = run
        log.debug("started %s run %s", tool, run.token[:6])
        return await self._serve(run, ctx)

    async def resume(self, ctx: Context, tool: str) -> Any:
        """A later call: hand the client's answer to the waiting run and serve it on."""
        token = ctx.request_state
        run = self._runs.get(token or "")
        if run is None or run.tool != tool:
            raise ToolError(
                f"this {tool} call continues a run this server no longer has (it finished, expired after "
                f"{self.timeout:g} s without an answer, or the server restarted); call {tool} again without "
                "request_state to start over"
            )
        async with run.lock:
            ask = run.pending
            if ask is not None and not ask.answer.done():
                response = (ctx.input_responses or {}).get(ask.key)
                if response is None:  # retried without the answer: ask again
                    return InputRequiredResult(input_requests={ask.key: ask.request}, request_state=run.token)
                ask.answer.set_result(response_text(response))
                run.pending = None
            return await self._serve_locked(run, ctx)

    async def aclose(self) -> None:
        """Cancel every run in flight (server shutdown)."""
        runs, self._runs = list(self._runs.values()), {}
        for run in runs:
            if run.task is not None and not run.task.done():
                run.task.cancel()
        for run in runs:
            if run.task is not None:
                await asyncio.gather(run.task, return_exceptions=True)

    # ---- internals ---------------------------------------------------------------------------------------
    def _sampler(self, run: _Run) -> Sampler:
        async def sample(request: SamplingRequest) -> str:
            run.asks += 1
            ask = _Ask(f"sample-{run.asks}", create_message_request(request), asyncio.get_running_loop().create_future())
            run.pending = ask
            run.events.put_nowait(ask)
            try:
                return await asyncio.wait_for(ask.answer, self.timeout)
            except TimeoutError:
                log.warning("%s run %s: no answer from the client's model in %g s; dropped",
                            run.tool, run.token[:6], self.timeout)
                raise RunFailed(f"the MCP client did not answer the model request within {self.timeout:g} s",
                                "model") from None

        return sample

    def _finished(self, run: _Run, task: asyncio.Task[Any]) -> None:
        self._runs.pop(run.token, None)
        if not task.cancelled() and task.exception() is not None:  # retrieved here so asyncio does not warn
            log.debug("%s run %s ended with %r", run.tool, run.token[:6], task.exception())
        run.events.put_nowait(_Done())

    async def _serve(self, run: _Run, ctx: Context) -> Any:
        async with run.lock:
            return await self._serve_locked(run, ctx)

    async def _serve_locked(self, run: _Run, ctx: Context) -> Any:
        while True:
            event = await run.events.get()
            if isinstance(event, _Progress):
                await ctx.report_progress(event.progress, event.total, event.message)
            elif isinstance(event, _Ask):
                return InputRequiredResult(input_requests={event.key: event.request}, request_state=run.token)
            else:
                assert run.task is not None and run.task.done()
                log.debug("%s run %s done after %d model request(s)", run.tool, run.token[:6], run.asks)
                return run.task.result()
