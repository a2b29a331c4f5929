"""Streamable HTTP with bearer auth, through fastmcp's in-process ASGI test server (no port): static tokens
and JWTs are accepted, missing or wrong ones refused with 401 on every route that touches data, and the
health route answers without a token and without data. Plus ``routine serve --http`` refusing to expose an
unauthenticated server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastmcp.server.auth.providers.jwt import JWTVerifier, RSAKeyPair
from fastmcp.utilities.tests import ASGIServer, asgi_server

from server.app import create_app
from server.auth import BearerVerifier, build_auth, load_tokens
from server.cli import main
from server.settings import Settings

pytestmark = pytest.mark.anyio

ISSUER = "https://idp.example.com"
AUDIENCE = "routine-mcp"
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}


@pytest.fixture(scope="module")
def keys() -> RSAKeyPair:
    return RSAKeyPair.generate()


@pytest.fixture
async def server(make_service, hr_routines, keys) -> AsyncIterator[ASGIServer]:
    service = make_service()
    await service.save(hr_routines["hr.salary"].model_dump(exclude_none=True, exclude={"version"}))
    jwt = JWTVerifier(public_key=keys.public_key, issuer=ISSUER, audience=AUDIENCE)
    async with asgi_server(create_app(service, auth=BearerVerifier(["tok-good", "tok-other"], jwt))) as running:
        yield running


async def listed(server: ASGIServer, token: str) -> list[str]:
    async with server.client(auth=token) as client:
        result = await client.call_tool("list_routines", {})
    return [r["id"] for r in result.structured_content["result"]]


async def status_of(server: ASGIServer, headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with server.http_client() as http:
        response = await http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS | (headers or {}))
    return response.status_code, response.headers.get("www-authenticate", "")


# ---- static tokens -------------------------------------------------------------------------------------
async def test_a_good_token_works(server) -> None:
    assert await listed(server, "tok-good") == ["hr.salary"]
    assert await listed(server, "tok-other") == ["hr.salary"]
    async with server.client(auth="tok-good") as client:
        tools = {t.name for t in await client.list_tools()}
        text = await client.read_resource("routine://hr.salary/text")
    assert "run_routine" in tools and text[0].text.startswith("Step 1.")


@pytest.mark.parametrize("headers", [None, {"authorization": "Bearer tok-bad"}, {"authorization": "Bearer "},
                                     {"authorization": "Basic dG9rLWdvb2Q="}, {"authorization": "tok-good"}],
                         ids=["missing", "wrong", "empty", "basic", "no-scheme"])
async def test_a_missing_or_wrong_token_is_refused(server, headers) -> None:
    code, challenge = await status_of(server, headers)
    assert code == 401 and challenge.startswith("Bearer")


async def test_a_client_with_a_wrong_token_cannot_connect(server) -> None:
    with pytest.raises(Exception, match="401|Unauthorized|error response"):
        await listed(server, "tok-bad")


async def test_health_answers_without_a_token_and_without_data(server) -> None:
    async with server.http_client() as http:
        response = await http.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert "salary" not in response.text


async def test_every_other_route_needs_the_token(server) -> None:
    """No auth bypass: each route the app serves, except /health, refuses a request without a token."""
    app_routes = [r for r in server.app.routes if getattr(r, "path", None)]  # type: ignore[attr-defined]
    paths = {r.path for r in app_routes}
    assert "/health" in paths and "/mcp" in paths
    async with server.http_client() as http:
        for route in app_routes:
            if route.path == "/health":
                continue
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                response = await http.request(method, route.path, headers=MCP_HEADERS,
                                              json=INITIALIZE if method == "POST" else None)
                assert response.status_code == 401, (method, route.path, response.status_code)


# ---- JWT -----------------------------------------------------------------------------------------------
async def test_a_signed_jwt_is_accepted(server, keys) -> None:
    token = keys.create_token(subject="agent-7", issuer=ISSUER, audience=AUDIENCE)
    assert await listed(server, token) == ["hr.salary"]


def bad_tokens(keys: RSAKeyPair) -> dict[str, str]:
    return {
        "expired": keys.create_token(issuer=ISSUER, audience=AUDIENCE, expires_in_seconds=-120),
        "wrong audience": keys.create_token(issuer=ISSUER, audience="another-service"),
        "wrong issuer": keys.create_token(issuer="https://evil.example.com", audience=AUDIENCE),
        "other key": RSAKeyPair.generate().create_token(issuer=ISSUER, audience=AUDIENCE),
    }


@pytest.mark.parametrize("kind", ["expired", "wrong audience", "wrong issuer", "other key"])
async def test_a_bad_jwt_is_refused(server, keys, kind: str) -> None:
    code, _ = await status_of(server, {"authorization": f"Bearer {bad_tokens(keys)[kind]}"})
    assert code == 401


# ---- auth from settings --------------------------------------------------------------------------------
def test_build_auth_from_settings(tmp_path: Path, keys: RSAKeyPair) -> None:
    assert build_auth(Settings(_env_file=None, data_dir=tmp_path)) is None
    token_file = tmp_path / "tokens"
    token_file.write_text("# one per line\nfile-token\n\n")
    settings = Settings(_env_file=None, data_dir=tmp_path, auth_tokens="env-a, env-b,", auth_tokens_file=token_file)
    assert load_tokens(settings) == ["env-a", "env-b", "file-token"]
    auth = build_auth(settings)
    assert isinstance(auth, BearerVerifier) and auth.jwt is None
    with pytest.raises(ValueError, match="ROUTINE_AUTH_TOKENS_FILE .*nope does not exist"):
        build_auth(Settings(_env_file=None, data_dir=tmp_path, auth_tokens_file=tmp_path / "nope"))
    jwt_only = build_auth(Settings(_env_file=None, data_dir=tmp_path, jwt_public_key=keys.public_key,
                                   jwt_audience=AUDIENCE, jwt_issuer=ISSUER))
    assert isinstance(jwt_only, BearerVerifier) and jwt_only.tokens == [] and jwt_only.jwt is not None


async def test_verifier_checks(keys: RSAKeyPair) -> None:
    verifier = BearerVerifier(["s3cret"], JWTVerifier(public_key=keys.public_key, issuer=ISSUER, audience=AUDIENCE))
    assert (await verifier.verify_token("s3cret")).client_id == "static-1"
    assert await verifier.verify_token("s3cret ") is None
    assert await verifier.verify_token("") is None
    good = await verifier.verify_token(keys.create_token(subject="agent-7", issuer=ISSUER, audience=AUDIENCE))
    assert good is not None and good.client_id == "agent-7"
    assert await BearerVerifier([""]).verify_token("") is None  # an empty configured token is no token


# ---- routine serve --http ------------------------------------------------------------------------------
AUTH_VARIABLES = ("ROUTINE_AUTH_TOKENS", "ROUTINE_AUTH_TOKENS_FILE", "ROUTINE_JWT_PUBLIC_KEY", "ROUTINE_JWT_JWKS_URI")


def serve(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
          *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """``routine serve ARGS`` with no auth configured but ``env``; returns (exit code, stderr)."""
    for name in AUTH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ROUTINE_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no developer's .env
    try:
        main(["serve", *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "example.com", "::"])
def test_serve_http_without_auth_refuses_a_public_host(monkeypatch, capsys, tmp_path, host: str) -> None:
    code, err = serve(monkeypatch, capsys, tmp_path, "--http", "--host", host)
    assert code == 2
    assert f"refusing to serve {host} without auth" in err and "ROUTINE_AUTH_TOKENS" in err
    assert "Traceback" not in err


def test_serve_http_with_a_missing_token_file_is_one_clear_error(monkeypatch, capsys, tmp_path) -> None:
    code, err = serve(monkeypatch, capsys, tmp_path, "--http", "--host", "0.0.0.0",
                      env={"ROUTINE_AUTH_TOKENS_FILE": str(tmp_path / "absent")})
    assert code == 2 and "ROUTINE_AUTH_TOKENS_FILE" in err and "does not exist" in err and "Traceback" not in err


def test_loopback_hosts_are_local() -> None:
    from server.cli.serve_cmds import _is_loopback

    assert all(_is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.9.9.9"))
    assert not any(_is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com", ""))


# ---- the client's model over HTTP ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_clients_model_over_http(make_service, hr_routines, people, mode: str) -> None:
    """Both sampling flows survive the HTTP transport: the 2026-07-28 request_state is sealed and unsealed
    across requests, and create_message travels on the open request's stream."""
    from routines.backends.scripted import call_text

    replies = [("get_user_profile", {"user_id": people.staff_user}),
               ("search_employee", {"name": people.employee_name, "department": people.department}),
               ("check_permission", {"user_id": people.staff_user, "action": "view_salary",
                                     "employee_id": people.employee_id}),
               ("get_salary_band", {"employee_id": people.employee_id}),
               ("summarize", {"template": "salary_band", "data": {"employee": people.employee_name}})]

    async def model(messages: object, params: object, context: object) -> str:
        return call_text(*replies.pop(0))

    service = make_service(executor_backend="sampling")
    await service.save(hr_routines["hr.salary"].model_dump(exclude_none=True, exclude={"version"}))
    app = create_app(service, auth=BearerVerifier([f"tok-good {people.staff_user}"]))  # the token's user runs it
    async with asgi_server(app) as running, running.client(auth="tok-good", mode=mode, sampling_handler=model) as client:
        out = (await client.call_tool("run_routine", {
            "query": f"What does {people.employee_name} earn?", "routine_id": "hr.salary", "mode": "model",
            "inputs": {"employee_name": people.employee_name, "department": people.department},
            })).structured_content
    assert out["status"] == "finished" and len(out["steps"]) == 5 and replies == []
