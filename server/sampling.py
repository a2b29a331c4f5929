"""The MCP client's own model as a backend (design section 5).

- MCP 2026-07-28 connections: the tool returns an ``InputRequiredResult`` with a ``CreateMessageRequest`` and
  the answer arrives when the client calls again (``server/input_required.py`` bridges that to an awaitable).
- Older connections: the server asks with ``ctx.session.create_message`` while the call is open.
- A client that declared no sampling capability gets ``SamplingUnavailable`` saying what to configure instead.

``with_client_model`` picks the path for one tool call and runs the tool's work with the right backend.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from fastmcp import Context
from mcp import types
from mcp.types import InputRequiredResult

from routines.backends.base import Backend
from routines.backends.sampling import Sampler, SamplingBackend, SamplingRequest
from routines.errors import RunFailed, SamplingUnavailable
from server.input_required import InputRequiredBridge, Reporter

T = TypeVar("T")

Work = Callable[[Backend | None, Reporter], Awaitable[T]]
"""A tool's work: gets the client's model as a backend (``None`` when it needs none) and a progress reporter."""


def is_modern(ctx: Context) -> bool:
    """True on a 2026-07-28 connection (no server-to-client requests; input-required flow instead)."""
    check = getattr(ctx, "_is_modern_protocol", None)
    try:
        return bool(check()) if callable(check) else False
    except (AttributeError, RuntimeError, LookupError):
        return False


def offers_sampling(ctx: Context) -> bool:
    """True when the client declared the sampling capability (per request on 2026-07-28 connections)."""
    try:
        return bool(ctx.session.check_client_capability(types.ClientCapabilities(sampling=types.SamplingCapability())))
    except (AttributeError, RuntimeError, LookupError, TypeError):
        return False


def create_message_sampler(ctx: Context, timeout: float) -> Sampler:
    """Ask the client's model with ``sampling/createMessage`` requests (connections before 2026-07-28); a
    request unanswered after ``timeout`` seconds fails the run."""

    async def sample(request: SamplingRequest) -> str:
        messages = [
            types.SamplingMessage(role=role, content=types.TextContent(type="text", text=text))  # type: ignore[arg-type]
            for role, text in request.turns
        ]
        try:
            with warnings.catch_warnings(), anyio.fail_after(timeout):
                warnings.simplefilter("ignore")  # sampling is deprecated in 2026-07-28; still what this client speaks
                result: Any = await ctx.session.create_message(
                    messages=messages, max_tokens=request.max_tokens, system_prompt=request.system or None,
                    temperature=0.0, related_request_id=ctx.request_id,
                )
        except TimeoutError:
            raise RunFailed(f"the MCP client did not answer the model request within {timeout:g} s", "model") from None
        content = result.content
        if isinstance(content, list):
            return "".join(getattr(c, "text", "") or "" for c in content)
        return getattr(content, "text", "") or ""

    return sample


def progress_reporter(ctx: Context) -> Reporter:
    async def report(progress: float, total: float | None = None, message: str | None = None) -> None:
        await ctx.report_progress(progress, total, message)

    return report


async def with_client_model(
    ctx: Context, bridge: InputRequiredBridge, tool: str, work: Work[T], *, needed: bool
) -> T | InputRequiredResult:
    """Run one call of ``tool``. With ``needed``, ``work`` gets the client's model: on 2026-07-28 connections
    through ``bridge`` (the call may return ``InputRequiredResult``; a later call with ``request_state``
    continues the same run), on older ones through ``create_message``. Without ``needed`` it runs directly.
    Raises ``SamplingUnavailable`` when the model is needed and the client offers no sampling."""
    if ctx.request_state is not None:
        return await bridge.resume(ctx, tool)  # type: ignore[no-any-return]
    if not needed:
        return await work(None, progress_reporter(ctx))
    if not offers_sampling(ctx):
        era = "MCP 2026-07-28" if is_modern(ctx) else "this"
        raise SamplingUnavailable(f"the client did not declare the sampling capability on {era} connection")
    if is_modern(ctx):
        return await bridge.start(ctx, tool, lambda sampler, report: work(SamplingBackend(sampler), report))
    return await work(SamplingBackend(create_message_sampler(ctx, bridge.timeout)), progress_reporter(ctx))
