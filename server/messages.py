"""Error texts a person can act on, where fastmcp's own would mislead.

- ``ReadableValidationErrors``: a tool or prompt called with bad arguments answers ``invalid arguments for
  run_routine: query: String should have at least 1 character`` instead of pydantic's multi-line report with
  its ``type=...``, the echoed input and a documentation link.
- ``BearerErrorText``: an HTTP request with a bearer token the server does not accept gets a 401 whose
  ``error_description`` says so. fastmcp's text tells the client to "re-register and obtain new tokens",
  which only an OAuth client can do; ours are static tokens or JWTs from the operator's issuer.
"""

from __future__ import annotations

import json
from typing import Any

import mcp.types as mt
from fastmcp.exceptions import PromptError, ValidationError
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from pydantic import ValidationError as PydanticValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

WRONG_TOKEN = (
    "The bearer token is not accepted by this server: it is neither one of its static tokens nor a valid, "
    "unexpired JWT from the issuer it trusts. Check the token your client sends, or ask the server's operator "
    "for one."
)


def describe_validation(error: PydanticValidationError, limit: int = 6) -> str:
    """``field: message`` per problem, ``; ``-separated, without input echoes or documentation links."""
    parts = []
    for e in error.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in e["loc"])
        parts.append(f"{where}: {e['msg']}" if where else str(e["msg"]))
    more = len(error.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


class ReadableValidationErrors(Middleware):
    """Rewrites argument-validation failures of tools and prompts into one readable line."""

    async def on_call_tool(
        self, context: MiddlewareContext[mt.CallToolRequestParams], call_next: CallNext[Any, Any]
    ) -> Any:
        try:
            return await call_next(context)
        except ValidationError as exc:
            cause = exc.__cause__
            if not isinstance(cause, PydanticValidationError):
                raise
            raise ValidationError(f"invalid arguments for {context.message.name}: {describe_validation(cause)}") from None

    async def on_get_prompt(
        self, context: MiddlewareContext[mt.GetPromptRequestParams], call_next: CallNext[Any, Any]
    ) -> Any:
        try:
            return await call_next(context)
        except PromptError as exc:
            cause = exc.__cause__
            if not isinstance(cause, PydanticValidationError):
                raise
            raise PromptError(f"invalid arguments for {context.message.name}: {describe_validation(cause)}") from None


class BearerErrorText:
    """ASGI middleware: replaces the description of ``invalid_token`` 401 answers (body and
    ``WWW-Authenticate``) with ``WRONG_TOKEN``; every other response passes untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replacement: bytes | None = None

        async def relay(message: Message) -> None:
            nonlocal replacement
            if message["type"] == "http.response.start" and message["status"] == 401:
                headers = list(message.get("headers", []))
                challenge = next((v for k, v in headers if k.lower() == b"www-authenticate"), b"").decode("latin-1")
                if 'error="invalid_token"' in challenge:
                    replacement = json.dumps({"error": "invalid_token", "error_description": WRONG_TOKEN}).encode()
                    head, _, rest = challenge.partition('error_description="')
                    tail = rest.split('"', 1)[1] if rest else ""
                    challenge = f'{head}error_description="{WRONG_TOKEN}"{tail}' if rest else challenge
                    headers = [(k, v) for k, v in headers if k.lower() not in (b"www-authenticate", b"content-length")]
                    headers += [(b"www-authenticate", challenge.encode("latin-1")),
                                (b"content-length", str(len(replacement)).encode())]
                    message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and replacement is not None:
                if message.get("more_body"):
                    return  # the replacement goes out whole with the last chunk
                message = {**message, "body": replacement}
            await send(message)

        await self.app(scope, receive, relay)
