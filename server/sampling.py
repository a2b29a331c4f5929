"""The MCP client's own model as a backend (design section 5).

Connections before the 2026-07-28 protocol: the server asks with ``ctx.session.create_message``.
On 2026-07-28 connections the request goes out as an ``InputRequiredResult`` (see ``server/input_required.py``
when present); a client that offers neither gets ``SamplingUnavailable`` with what to configure instead.
"""

from __future__ import annotations

import warnings
from typing import Any

from fastmcp import Context
from mcp import types

from routines.backends.sampling import SamplingBackend, SamplingRequest, SamplingUnavailable


def _is_modern(ctx: Context) -> bool:
    check = getattr(ctx, "_is_modern_protocol", None)
    try:
        return bool(check()) if callable(check) else False
    except (AttributeError, RuntimeError, LookupError):
        return False


def _offers_sampling(ctx: Context) -> bool:
    try:
        return bool(ctx.session.check_client_capability(types.ClientCapabilities(sampling=types.SamplingCapability())))
    except (AttributeError, RuntimeError, LookupError, TypeError):
        return False


def sampling_backend(ctx: Context) -> SamplingBackend:
    """A backend that asks the connected client's model; raises SamplingUnavailable when it cannot."""
    if _is_modern(ctx):
        bridge = getattr(ctx, "_routine_input_required_sampler", None)
        if bridge is None:
            raise SamplingUnavailable("this connection uses the 2026-07-28 protocol; its input-required sampling "
                                      "flow is not enabled for this tool")
        return SamplingBackend(bridge)
    if not _offers_sampling(ctx):
        raise SamplingUnavailable("the client did not declare the sampling capability")

    async def sample(request: SamplingRequest) -> str:
        messages = [
            types.SamplingMessage(role=role, content=types.TextContent(type="text", text=text))  # type: ignore[arg-type]
            for role, text in request.turns
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result: Any = await ctx.session.create_message(
                messages=messages, max_tokens=request.max_tokens, system_prompt=request.system, temperature=0.0,
            )
        content = result.content
        if isinstance(content, list):
            return "".join(getattr(c, "text", "") for c in content)
        return getattr(content, "text", "") or ""

    return SamplingBackend(sample)
