"""Settings become a backend and a mode in one place (issue 19): what each command and the service get."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.settings import Settings


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_a_commands_own_values_win_over_the_settings(tmp_path: Path) -> None:
    s = settings(tmp_path, model="hr", endpoint="http://vllm:8000/v1", api_key="k", local_model="/models/mine")
    assert s.backend_options("openai") == {"model": "hr", "base_url": "http://vllm:8000/v1", "api_key": "k"}
    assert s.backend_options("openai", model="other", base_url="http://x/v1")["model"] == "other"
    local = s.backend_options("local")
    assert local["model"] == "/models/mine" and local["adapter"] is None  # a model of your own: no shipped adapter
    assert s.backend_options("scripted") == {}


def test_the_embedded_executor_loads_the_shipped_adapter_unless_told_not_to(tmp_path: Path) -> None:
    shipped = settings(tmp_path).adapter_for(None)
    assert shipped is not None and Path(shipped, "adapter_config.json").exists()
    assert settings(tmp_path, local_adapter="none").adapter_for(None) is None
    assert settings(tmp_path).adapter_for("none") is None
    assert settings(tmp_path).backend_options("local", adapter="/my/adapter")["adapter"] == "/my/adapter"


def test_the_planner_uses_its_own_model_and_endpoint_else_the_executors(tmp_path: Path) -> None:
    both = settings(tmp_path, model="exec", endpoint="http://exec/v1", planner_model="plan", planner_endpoint="http://plan/v1")
    planner = both.planner()
    assert planner.model == "plan" and str(planner.client.base_url).startswith("http://plan/v1")  # type: ignore[union-attr]
    fallback = settings(tmp_path, model="exec", endpoint="http://exec/v1").planner("openai")
    assert fallback.model == "exec" and str(fallback.client.base_url).startswith("http://exec/v1")  # type: ignore[union-attr]
    assert settings(tmp_path).planner("openai", model="cli-model").model == "cli-model"  # type: ignore[union-attr]


def test_the_run_mode_is_the_requests_else_the_setting(tmp_path: Path) -> None:
    assert settings(tmp_path, executor_mode="bound").run_mode(None) == "bound"
    assert settings(tmp_path, executor_mode="bound").run_mode("model") == "model"


def test_the_store_is_in_the_data_directory(tmp_path: Path) -> None:
    assert settings(tmp_path).store_path == tmp_path / "routines.sqlite"
    with pytest.raises(ValueError):
        settings(tmp_path, executor_backend="gpt")
