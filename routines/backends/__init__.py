"""Model backends behind one small interface (``base.Backend``), named by what they talk to.

``create_backend`` builds one from a kind and options (the CLI's ``--backend`` and the server's settings).
Heavy backends are imported only when asked for.
"""

from __future__ import annotations

from typing import Any

from routines.backends.base import Backend, BaseBackend, Completion, Constraint, Message, ToolSpec
from routines.backends.scripted import ScriptedBackend, call_text
from routines.errors import MissingExtra

KINDS = ("local", "openai", "scripted", "none")
LOCAL_EXTRA_MODULES = ("torch", "transformers", "gguf", "llguidance", "sentence_transformers", "safetensors")


def create_backend(kind: str, **options: Any) -> Backend | None:
    """``local``: the embedded SmolLM2-135M (options: model, adapter); ``openai``: an OpenAI-compatible
    endpoint (options: model, base_url, api_key, native_tools, constrain_with); ``scripted``: replies;
    ``none``: no model (bound runs only)."""
    options = {k: v for k, v in options.items() if v is not None}
    if kind in ("local", "transformers"):
        try:
            from routines.backends.transformers import TransformersBackend
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.split(".")[0] not in LOCAL_EXTRA_MODULES:
                raise
            raise MissingExtra("local", exc.name, "the embedded executor model (the local backend)") from None

        return TransformersBackend(**options)
    if kind == "openai":
        from routines.backends.openai import OpenAIBackend

        if "model" not in options:
            raise ValueError("the openai backend needs a model (the served model or LoRA adapter name)")
        return OpenAIBackend(**options)
    if kind == "scripted":
        return ScriptedBackend(options.get("replies", ()))
    if kind in ("none", "bound"):
        return None
    raise ValueError(f"unknown backend {kind!r}; use one of {', '.join(KINDS)}")


__all__ = [
    "KINDS",
    "Backend",
    "BaseBackend",
    "Completion",
    "Constraint",
    "Message",
    "MissingExtra",
    "ScriptedBackend",
    "ToolSpec",
    "call_text",
    "create_backend",
]
