"""``OpenAIBackend``: any OpenAI-compatible chat endpoint (vLLM serving a base model plus LoRA adapters,
OpenAI itself, llama.cpp's server...).

With vLLM the request's ``model`` names the LoRA adapter (``vllm serve BASE --enable-lora --lora-modules
hr=/adapters/hr``). Our history's ``<tool_call>`` turns go out as native ``tool_calls`` with matching
``tool`` messages, which chat templates such as Qwen's render back as ``<tool_call>`` text. Replies are read
from native ``tool_calls`` or from ``<tool_call>`` text alike. Constraints: ``structured_outputs``
(vLLM) with a JSON schema of the allowed calls, string lengths capped, or, with ``native_tools``, a named
``tool_choice``; note that vLLM silently ignores the removed ``guided_json``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, Literal

import openai

from routines.backends.base import BaseBackend, Completion, Constraint, Message, Stopwatch, ToolSpec
from routines.backends.schema import call_schema, capped
from routines.calls import CallParseError, parse_tool_call
from routines.errors import ModelEndpointError, PromptTooLong

log = logging.getLogger(__name__)


def to_openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Our messages as OpenAI chat messages: assistant calls become ``tool_calls`` with ids, and each
    following ``tool`` message answers the call before it."""
    out: list[dict[str, Any]] = []
    last_id: str | None = None
    n = 0
    for m in messages:
        if m.role == "assistant":
            try:
                call = parse_tool_call(m.content)
            except CallParseError:
                out.append({"role": "assistant", "content": m.content})
                last_id = None
                continue
            n += 1
            last_id = f"call_{n}"
            out.append({
                "role": "assistant", "content": None,
                "tool_calls": [{"id": last_id, "type": "function",
                                "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)}}],
            })
        elif m.role == "tool":
            if last_id is None:
                out.append({"role": "user", "content": f"Tool result: {m.content}"})
            else:
                out.append({"role": "tool", "tool_call_id": last_id, "content": m.content})
                last_id = None
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def _tool_param(spec: ToolSpec) -> dict[str, Any]:
    return {"type": "function", "function": spec.as_dict()}


class OpenAIBackend(BaseBackend):
    """``model``: the served model or LoRA adapter name. ``constrain_with``: how a ``Constraint`` is sent."""

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        native_tools: bool = False,
        constrain_with: Literal["structured_outputs", "tool_choice", "response_format"] = "structured_outputs",
        temperature: float = 0.0,
        timeout: float = 120.0,
        client: openai.AsyncOpenAI | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.native_tools = native_tools
        self.constrain_with = constrain_with
        self.temperature = temperature
        self.extra_body = dict(extra_body or {})
        self.client = client or openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout)
        self.name = f"openai:{model}"

    async def aclose(self) -> None:
        await self.client.close()

    def request(self, messages: Sequence[Message], constraint: Constraint | None, max_tokens: int) -> dict[str, Any]:
        """The keyword arguments of one ``chat.completions.create`` call (public for tests and debugging)."""
        kwargs: dict[str, Any] = {
            "model": self.model, "messages": to_openai_messages(messages), "max_tokens": max_tokens,
            "temperature": self.temperature,
        }
        extra = dict(self.extra_body)
        tools = constraint.tools if constraint else ()
        if tools:
            assert constraint is not None
            if self.native_tools or self.constrain_with == "tool_choice":  # a tool_choice needs the tools
                kwargs["tools"] = [_tool_param(capped(t, constraint.max_string_length)) for t in tools]
            if self.constrain_with == "tool_choice":
                kwargs["tool_choice"] = (
                    {"type": "function", "function": {"name": tools[0].name}} if len(tools) == 1 else "required"
                )
            else:
                schema = call_schema(tools, constraint.max_string_length)
                if self.constrain_with == "response_format":
                    kwargs["response_format"] = {
                        "type": "json_schema", "json_schema": {"name": "tool_call", "schema": schema},
                    }
                else:
                    extra["structured_outputs"] = {"json": schema}
        if constraint is not None and constraint.json_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema", "json_schema": {"name": "answer", "schema": constraint.json_schema},
            }
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    async def complete(
        self, messages: Sequence[Message], *, constraint: Constraint | None = None, max_tokens: int = 512
    ) -> Completion:
        watch = Stopwatch()
        try:
            response = await self.client.chat.completions.create(**self.request(messages, constraint, max_tokens))
        except openai.APIConnectionError as exc:
            raise ModelEndpointError(f"model endpoint unreachable ({self.client.base_url}): {exc}") from exc
        except openai.APIStatusError as exc:
            if exc.status_code == 400 and (getattr(exc, "code", None) == "context_length_exceeded"
                                           or "maximum context length" in str(exc.message).lower()):
                raise PromptTooLong(f"the model endpoint says the prompt is too long: {exc.message}", (0,)) from exc
            raise ModelEndpointError(f"model endpoint answered {exc.status_code}: {exc.message}") from exc
        choice = response.choices[0].message
        text = choice.content or ""
        calls = choice.tool_calls or []
        if calls:
            rendered = []
            for call in calls:
                try:
                    args = json.loads(call.function.arguments or "{}")
                except json.JSONDecodeError:
                    args = call.function.arguments
                rendered.append("<tool_call>" + json.dumps({"name": call.function.name, "arguments": args},
                                                           ensure_ascii=False) + "</tool_call>")
            text = "\n".join(rendered)
        elif constraint is not None and constraint.tools and text.lstrip().startswith("{"):
            text = f"<tool_call>{text.strip()}</tool_call>"  # structured output is the bare call object
        usage = response.usage
        return Completion(
            text=text,
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            output_tokens=getattr(usage, "completion_tokens", 0) or 0,
            latency_s=watch.elapsed,
            backend=self.name,
            meta={"constrained": bool(constraint and (constraint.tools or constraint.json_schema))},
        )
