"""What a new user meets first: the version (``routine --version`` and ``serverInfo``, both pyproject's),
errors a person can act on (bad arguments without pydantic's report and links, a refused token without
"re-register", a missing ``local`` extra named as such), and the LICENSE and CHANGELOG files."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from fastmcp.utilities.tests import asgi_server

from routines.hub import ToolHub
from scenarios.hr.server import create_server
from server import __version__
from server.app import create_app
from server.auth import BearerVerifier
from server.messages import WRONG_TOKEN
from server.service import RoutineService
from server.settings import Settings

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def test_routine_version_is_pyprojects(cli) -> None:
    code, out, _ = cli("--version")
    assert (code, out.strip()) == (0, f"routine-mcp {PYPROJECT_VERSION}")
    assert __version__ == PYPROJECT_VERSION


async def test_server_info_carries_our_version(make_service) -> None:
    async with Client(create_app(make_service())) as client:
        info = client.server_info
    assert (info.name, info.version) == ("routine-mcp", PYPROJECT_VERSION)


def test_license_and_changelog_exist() -> None:
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text  # the full text, not a pointer to it
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## {PYPROJECT_VERSION}" in changelog, "the CHANGELOG has an entry for the current version"


BAD_ARGUMENTS = [
    ("run_routine", {"query": ""}, "invalid arguments for run_routine: query: String should have at least 1 character"),
    ("run_routine", {}, "invalid arguments for run_routine: query: Missing required argument"),
    ("retrieve_routine", {"query": "x", "k": 0},
     "invalid arguments for retrieve_routine: k: Input should be greater than or equal to 1"),
]


@pytest.mark.parametrize(("tool", "arguments", "expected"), BAD_ARGUMENTS)
async def test_bad_arguments_read_as_one_line(make_service, tool: str, arguments: dict, expected: str) -> None:
    async with Client(create_app(make_service())) as client:
        with pytest.raises(ToolError) as caught:
            await client.call_tool(tool, arguments)
    assert str(caught.value) == expected  # no "For further information visit https://errors.pydantic.dev/..."


async def test_an_empty_draft_for_the_planning_prompt_says_so(make_service) -> None:
    async with Client(create_app(make_service())) as client:
        with pytest.raises(Exception, match="draft is empty") as caught:
            await client.get_prompt("plan_routine", {"draft": " "})
    assert "JSON" not in str(caught.value)


async def test_a_refused_token_is_told_what_to_check(make_service) -> None:
    app = create_app(make_service(), auth=BearerVerifier(["tok-good"]))
    async with asgi_server(app) as server, server.http_client() as http:
        wrong = await http.post("/mcp", json={}, headers={"authorization": "Bearer tok-bad"})
        missing = await http.post("/mcp", json={})
    assert wrong.status_code == 401 and wrong.json() == {"error": "invalid_token", "error_description": WRONG_TOKEN}
    challenge = wrong.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token"') and WRONG_TOKEN in challenge
    assert "re-register" not in wrong.text + challenge
    assert int(wrong.headers["content-length"]) == len(wrong.content)
    # No token at all: the RFC 6750 challenge without an error, as before.
    assert missing.status_code == 401 and "error=" not in missing.headers["www-authenticate"]


async def test_a_missing_local_extra_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hr_db: Path, hr_routines, people
) -> None:
    """The default executor (local) without torch installed: the run names the extra to install."""
    from memory.embeddings import HashEmbedder

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails as if it were not installed
    monkeypatch.delitem(sys.modules, "routines.backends.transformers", raising=False)
    service = RoutineService(Settings(_env_file=None, data_dir=tmp_path), hub=ToolHub({"hr": create_server(hr_db)}),
                             embedder=HashEmbedder())
    async with Client(create_app(service)) as client:
        await client.call_tool("save_routine", {"routine": hr_routines["hr.salary"].model_dump(
            exclude_none=True, exclude={"version"})})
        with pytest.raises(ToolError) as caught:
            await client.call_tool("run_routine", {"query": f"What does {people.employee_name} earn?",
                                                   "routine_id": "hr.salary", "user_id": people.hr_user})
    message = str(caught.value)
    assert "needs the 'local' extra" in message and "pip install 'routine-mcp[local]'" in message
    assert "no module named 'torch'" in message
    await service.aclose()
