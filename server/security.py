"""Who is calling and what they may do, and the HTTP front door (docs/security.md).

- ``Caller``: the identity and scopes of the request's bearer token. Without a token (stdio, or HTTP on
  loopback with no auth configured) the caller is the local operator and may do everything.
- Scopes: ``routines:write`` saves and deletes Routines, ``datasets:write`` runs ``distill_dataset``,
  ``users:act-as`` lets a trusted front end run Routines for a user it names. Running and reading need none.
- ``http_options``: what ``routine serve --http`` gives fastmcp: Host/Origin validation against DNS rebinding
  (loopback names and the bound address, plus ``ROUTINE_ALLOWED_HOSTS``/``ROUTINE_ALLOWED_ORIGINS``) and a
  limit on request bodies (``ROUTINE_MAX_REQUEST_BYTES``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from fastmcp.exceptions import ToolError
from fastmcp.server.dependencies import get_access_token
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.settings import Settings

SCOPE_WRITE = "routines:write"
SCOPE_DATASETS = "datasets:write"
SCOPE_ACT_AS = "users:act-as"


def split_list(value: str | None) -> list[str]:
    """A comma-separated setting as a list (blanks dropped)."""
    return [v.strip() for v in (value or "").split(",") if v.strip()]


# ---- identity and scopes -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Caller:
    """The caller of one request. ``authenticated`` False: no token (the local operator)."""

    authenticated: bool
    user_id: str | None = None
    scopes: frozenset[str] = frozenset()
    client_id: str | None = None

    @classmethod
    def current(cls) -> Caller:
        token = get_access_token()
        if token is None:
            return cls(False)
        return cls(True, token.subject or None, frozenset(token.scopes or ()), token.client_id)

    def may(self, scope: str) -> bool:
        return not self.authenticated or scope in self.scopes

    def require(self, scope: str, action: str) -> None:
        """Raise a ``ToolError`` unless the caller's token grants ``scope``."""
        if not self.may(scope):
            has = ", ".join(sorted(self.scopes)) or "none"
            raise ToolError(f"{action} needs the '{scope}' scope, and this token ({self.client_id}) has {has}; "
                            "ask the server's operator for a token with that scope")

    def run_as(self, requested: str | None) -> str | None:
        """The user a run acts for: the token's user. Another ``user_id`` only with ``users:act-as`` (or
        without auth, where the local operator is trusted)."""
        if not self.authenticated or requested is None or requested == self.user_id:
            return requested if not self.authenticated else self.user_id
        if SCOPE_ACT_AS in self.scopes:
            return requested
        mine = f"user {self.user_id!r}" if self.user_id else "no user"
        raise ToolError(f"user_id {requested!r} was refused: the current user comes from your credentials (this "
                        f"token stands for {mine}); omit user_id, or use a token with the '{SCOPE_ACT_AS}' scope "
                        "to act for other users")


# ---- the HTTP front door -------------------------------------------------------------------------------
class BodyLimitMiddleware:
    """Answers 413 to a request whose body is larger than ``max_bytes`` (declared or as it arrives)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = PlainTextResponse(f"request body larger than {self.max_bytes} bytes (ROUTINE_MAX_REQUEST_BYTES)",
                                     status_code=413)
        await response(scope, receive, send)


class _TooLarge(Exception):
    """A streamed request body went over the limit."""


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def allowed_hosts(settings: Settings, bind_host: str) -> list[str]:
    """Host header names accepted: loopback names (fastmcp adds them), the bound address when it is a
    specific one, and ``ROUTINE_ALLOWED_HOSTS``."""
    hosts = split_list(settings.allowed_hosts)
    try:
        unspecified = ipaddress.ip_address(bind_host.strip("[]")).is_unspecified
    except ValueError:
        unspecified = False
    if bind_host and not unspecified:
        hosts.append(_url_host(bind_host))
    return hosts


def http_options(settings: Settings, bind_host: str) -> dict[str, Any]:
    """Keyword arguments for ``FastMCP.run_http_async``/``run(transport="http")``: strict Host and Origin
    validation (every request, whatever the bound address) and the request-size limit."""
    return {
        "host_origin_protection": True,
        "allowed_hosts": allowed_hosts(settings, bind_host),
        "allowed_origins": split_list(settings.allowed_origins),
        "middleware": [Middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)],
    }
