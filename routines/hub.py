"""``ToolHub``: the engine's connection to the enterprise's downstream MCP tool servers.

Configured like Claude Desktop (``{"mcpServers": {"hr": {"command": ..., "args": [...], "env": {...}},
"crm": {"url": ..., "headers": {...}, "bearer": ...}}}``; fastmcp's ``fastmcp.mcp_config`` models check each
entry) or with in-process FastMCP servers (tests, the demo). Ours on top of that format: ``${VAR}`` in ``env``
values and in ``bearer`` (or ``token``: sent as ``Authorization: Bearer ...``), ``idempotentTools``, and a
stdio server that ends when the hub closes. Tools are listed once and cached; with more than one server
their names get the server's name as a prefix (``hr_get_salary``). Calls have a timeout; a lost connection is
re-opened once before the call is given up as a ``DownstreamError``, so the next run works once a restarted
server is back. Only what fastmcp's client and the MCP SDK raise for a dead connection counts as one; any
other exception is raised as is.

A call that was sent and then lost its connection may or may not have run. It is repeated on the new
connection only when repeating it is safe: the tool is annotated ``readOnlyHint`` or ``idempotentHint`` (MCP
tool annotations), or the server's config entry lists it in ``"idempotentTools"`` (``["*"]``: every tool of
that server). Any other tool (a payment, a deletion, an e-mail) is never silently run twice: the call fails
with a ``DownstreamError`` that says it may have run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import anyio
import httpx2
from fastmcp import Client
from fastmcp.mcp_config import RemoteMCPServer, StdioMCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from routines.backends.base import ToolSpec
from routines.errors import CallerError, DownstreamError

log = logging.getLogger(__name__)

# What a transport raises underneath fastmcp's client when the other end is gone.
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    OSError,  # ConnectionError, BrokenPipeError, ...
    httpx2.TransportError,
)


@dataclass(frozen=True)
class ToolResult:
    """A downstream tool's answer. ``value`` is the structured result (or parsed JSON text, or text)."""

    value: Any
    text: str
    is_error: bool
    latency_s: float
    server: str
    tool: str


# ---- the servers config -----------------------------------------------------------------------------------
class _Idempotence(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    idempotent_tools: list[str] = Field(
        default_factory=list, alias="idempotentTools",
        description='Tools of this server that may be repeated after a lost connection (["*"]: all of them).')

    @field_validator("idempotent_tools", mode="before")
    @classmethod
    def _tool_names(cls, value: Any) -> Any:
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise ValueError('must be a list of tool names (or ["*"])')
        return value


class StdioServer(_Idempotence, StdioMCPServer):
    """A stdio server entry: fastmcp's fields; ``${VAR}`` in ``env`` values is expanded; ``args`` may hold
    numbers."""

    @field_validator("args", mode="before")
    @classmethod
    def _args_as_text(cls, value: Any) -> Any:
        return [str(a) for a in value] if isinstance(value, list) else value


class HttpServer(_Idempotence, RemoteMCPServer):
    """A streamable HTTP (or SSE, for a URL ending in ``/sse``) server entry: fastmcp's fields, and a bearer
    token as ``bearer`` or ``token`` (``${VAR}`` expanded)."""

    bearer: str | None = Field(None, description="A bearer token sent as the Authorization header.")
    token: str | None = Field(None, description="Another name for bearer.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value


def _problems(error: ValidationError) -> str:
    parts = []
    for e in error.errors(include_url=False)[:6]:
        where = ".".join(str(p) for p in e["loc"])
        message = str(e["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def server_entry(name: str, entry: Any, *, where: str = "the servers config") -> Any:
    """One ``mcpServers`` entry checked: a ``StdioServer`` or ``HttpServer`` for an object; an in-process
    server or ready transport (anything else) as it is. Raises ``CallerError`` naming the entry."""
    if isinstance(entry, (StdioServer, HttpServer)) or not isinstance(entry, Mapping):
        return entry
    model: type[BaseModel]
    if "command" in entry:
        model = StdioServer
    elif "url" in entry:
        model = HttpServer
    else:
        raise CallerError(f"{where}: server {name!r} needs a 'command' (stdio) or a 'url' (HTTP)")
    try:
        return model.model_validate(dict(entry))
    except ValidationError as exc:
        raise CallerError(f"{where}: server {name!r}: {_problems(exc)}") from None


def load_servers_config(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read a Claude-Desktop-style config (file path or dict; ``mcpServers`` or the servers bare) into
    ``{name: entry}`` with every entry checked (:func:`server_entry`)."""
    where, from_file = "the servers config", isinstance(source, (str, Path))
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        where = f"servers file {path}"
        try:
            source = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CallerError(f"servers file {path} not found") from None
        except json.JSONDecodeError as exc:
            raise CallerError(f"servers file {path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    servers = source.get("mcpServers", source) if isinstance(source, Mapping) else None
    if not isinstance(servers, Mapping) or not servers:
        raise CallerError(f'{where} has no servers: a servers config needs {{"mcpServers": {{"<name>": '
                          '{"command": ...} or {"url": ...}}}')
    checked = {}
    for name, entry in servers.items():
        if from_file and not isinstance(entry, Mapping):  # only a program can hand over a server object
            raise CallerError(f"{where}: server {name!r} must be an object with a 'command' (stdio) or a 'url' (HTTP)")
        checked[name] = server_entry(name, entry, where=where)
    return checked


_NOT_REPEATED = ("the connection was lost during the call, which may or may not have run; it was not repeated "
                 "because the tool is not marked idempotent (MCP idempotentHint or readOnlyHint, or the server's "
                 "\"idempotentTools\" in the servers file); check its effect before running it again")


def _safe_to_repeat(tool: Any) -> bool:
    """True when an MCP tool says that calling it twice does no more than calling it once."""
    hints = getattr(tool, "annotations", None)
    if hints is None:
        return False
    fields = getattr(type(hints), "model_fields", {})  # MCP SDK v2 renamed the fields (the old names warn)
    names = ("read_only_hint", "idempotent_hint") if "read_only_hint" in fields else ("readOnlyHint", "idempotentHint")
    return any(bool(getattr(hints, name, None)) for name in names)


def _idempotent_tools(entry: Any) -> set[str]:
    """The tool names a servers-file entry declares safe to repeat (``"idempotentTools"``; ``"*"``: all)."""
    return set(entry.idempotent_tools) if isinstance(entry, _Idempotence) else set()


def _transport(entry: Any) -> Any:
    if isinstance(entry, StdioServer):
        env = {k: os.path.expandvars(str(v)) for k, v in entry.env.items()}
        # keep_alive=False: closing our client ends the process (fastmcp's default keeps it running).
        return entry.model_copy(update={"env": env, "keep_alive": False}).to_transport()
    if isinstance(entry, HttpServer):
        headers = dict(entry.headers)
        bearer = entry.bearer or entry.token
        if bearer:
            headers.setdefault("Authorization", f"Bearer {os.path.expandvars(bearer)}")
        return entry.model_copy(update={"headers": headers}).to_transport()
    return entry  # a FastMCP server object or a ready transport: fastmcp's Client infers the rest


def _lost_connection(exc: BaseException, client: Client) -> bool:
    """True when ``exc`` says the connection to the server is gone, as the MCP SDK and fastmcp's client say
    it: ``MCPError`` with code ``CONNECTION_CLOSED`` (a stdio server that exited, a stream that ended), a
    transport error, or fastmcp's ``RuntimeError`` for a session that died ("Server session was closed
    unexpectedly", "Client is not connected", ...), which leaves the client disconnected."""
    if isinstance(exc, MCPError):
        return exc.error.code == CONNECTION_CLOSED
    if isinstance(exc, BaseExceptionGroup):
        return all(_lost_connection(e, client) for e in exc.exceptions)
    if isinstance(exc, _TRANSPORT_ERRORS):
        return True
    return isinstance(exc, RuntimeError) and not client.is_connected()


def _value_of(result: Any) -> tuple[Any, str]:
    """The structured value and the text of an MCP ``CallToolResult``."""
    texts = [c.text for c in (result.content or []) if getattr(c, "type", None) == "text"]
    text = "\n".join(texts)
    structured = result.structured_content
    if structured is not None:
        meta = (result.meta or {}).get("fastmcp") if result.meta else None
        wrapped = isinstance(meta, Mapping) and meta.get("wrap_result")
        if wrapped or (set(structured) == {"result"} and not text.lstrip().startswith('{"result"')):
            structured = structured.get("result")
        return structured, text
    try:
        return json.loads(text), text
    except (json.JSONDecodeError, ValueError):
        return text, text


class _Connection:
    """One downstream server's client. Opening is serialised, so concurrent calls after a crash start one
    new server process, not one each; a failed call closes only the client it used, never a newer one."""

    def __init__(self, name: str, entry: Any, timeout: float) -> None:
        self.name = name
        self.entry = entry
        self.timeout = timeout
        self.client: Client | None = None
        self._lock = anyio.Lock()

    async def open(self) -> Client:
        if self.client is not None and self.client.is_connected():  # the common case, without the lock
            return self.client
        async with self._lock:
            if self.client is not None and self.client.is_connected():
                return self.client
            await self._close(self.client)
            client = Client(_transport(self.entry), timeout=self.timeout, init_timeout=self.timeout)
            try:
                await client.__aenter__()
            except Exception as exc:
                # The server's answer (an MCP or HTTP error) or no connection at all: the server's problem (or
                # its config's). Anything else is raised as is.
                if not isinstance(exc, (MCPError, httpx2.HTTPError)) and not _lost_connection(exc, client):
                    raise
                raise DownstreamError(self.name, None, f"cannot connect: {exc or type(exc).__name__}") from exc
            self.client = client
            return client

    async def close(self, client: Client | None = None) -> None:
        """Close ``client`` if it is still the current one (any current client when None)."""
        async with self._lock:
            if client is None or client is self.client:
                await self._close(self.client)

    async def _close(self, client: Client | None) -> None:
        self.client = None
        if client is not None:
            try:
                await client.__aexit__(None, None, None)
            except Exception as exc:  # noqa: BLE001 - a dead connection fails to close in transport-specific ways
                log.debug("closing %s: %s", self.name, exc)


class ToolHub:
    """Lists and calls the tools of several downstream MCP servers as one tool set."""

    def __init__(self, servers: Mapping[str, Any], *, timeout: float = 30.0, prefix: bool | None = None) -> None:
        if not servers:
            raise CallerError("a ToolHub needs at least one downstream server")
        self.timeout = timeout
        self.prefix = len(servers) > 1 if prefix is None else prefix
        self._conns = {name: _Connection(name, server_entry(name, entry), timeout) for name, entry in servers.items()}
        self._tools: dict[str, tuple[str, ToolSpec]] | None = None
        self._repeatable: set[str] = set()  # exposed names of the tools a lost call may be repeated for
        self._lock = anyio.Lock()

    @classmethod
    def from_config(cls, source: str | Path | Mapping[str, Any], **kwargs: Any) -> ToolHub:
        return cls(load_servers_config(source), **kwargs)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for conn in self._conns.values():
            await conn.close()

    @property
    def servers(self) -> list[str]:
        return list(self._conns)

    async def list_tools(self, refresh: bool = False) -> list[ToolSpec]:
        """Every downstream tool (prefixed ``<server>_`` when there are several servers); cached."""
        if self._tools is not None and not refresh:
            return [spec for _, spec in self._tools.values()]
        async with self._lock:
            if self._tools is None or refresh:
                tools: dict[str, tuple[str, ToolSpec]] = {}
                repeatable: set[str] = set()
                for name, conn in self._conns.items():
                    listed = await self._with_reconnect(conn, None, lambda c: c.list_tools())
                    declared = _idempotent_tools(conn.entry)
                    for tool in listed:
                        spec = ToolSpec.from_mcp(tool)
                        exposed = f"{name}_{spec.name}" if self.prefix else spec.name
                        tools[exposed] = (name, ToolSpec(exposed, spec.description, spec.parameters))
                        if _safe_to_repeat(tool) or "*" in declared or spec.name in declared:
                            repeatable.add(exposed)
                self._tools, self._repeatable = tools, repeatable
        return [spec for _, spec in self._tools.values()]

    async def tool(self, name: str) -> ToolSpec | None:
        await self.list_tools()
        assert self._tools is not None
        entry = self._tools.get(name)
        return entry[1] if entry else None

    async def call(self, name: str, arguments: Mapping[str, Any], *, timeout: float | None = None) -> ToolResult:
        """Call a tool. A tool's own error comes back as ``is_error``; a server that cannot answer raises
        ``DownstreamError``."""
        if self._tools is None:
            await self.list_tools()
        assert self._tools is not None
        if name not in self._tools:
            raise CallerError(f"no downstream tool {name!r}; tools: {', '.join(sorted(self._tools))}")
        server, _ = self._tools[name]
        remote = name[len(server) + 1 :] if self.prefix else name
        conn = self._conns[server]
        limit = timeout or self.timeout
        started = time.perf_counter()
        result = await self._with_reconnect(
            conn, remote, lambda c: c.call_tool_mcp(remote, dict(arguments), timeout=limit), limit,
            repeat=name in self._repeatable,
        )
        value, text = _value_of(result)
        return ToolResult(value, text, bool(result.is_error), time.perf_counter() - started, server, remote)

    async def _with_reconnect(
        self, conn: _Connection, tool: str | None, op: Any, limit: float | None = None, *, repeat: bool = True
    ) -> Any:
        """Run ``op`` on the server's client; on a lost connection reconnect and run it again, but only when
        ``repeat`` (listing tools, or a tool that is safe to repeat)."""
        limit = limit or conn.timeout
        for attempt in (1, 2):
            client = await conn.open()
            try:
                return await op(client)
            except TimeoutError as exc:
                raise DownstreamError(conn.name, tool, f"no answer within {limit:g} s") from exc
            except Exception as exc:
                if isinstance(exc, MCPError) and exc.error.code == REQUEST_TIMEOUT:
                    raise DownstreamError(conn.name, tool, f"no answer within {limit:g} s") from exc
                if not _lost_connection(exc, client):
                    if isinstance(exc, MCPError):  # the server answered with an error
                        raise DownstreamError(conn.name, tool, str(exc)) from exc
                    raise  # not the connection: raised as is
                await conn.close(client)
                if attempt == 2:
                    raise DownstreamError(conn.name, tool, f"connection lost: {exc or type(exc).__name__}") from exc
                if not repeat:
                    raise DownstreamError(conn.name, tool, _NOT_REPEATED) from exc
                log.warning("downstream %s lost the connection (%s); reconnecting", conn.name, exc)
        raise AssertionError("unreachable")  # pragma: no cover
