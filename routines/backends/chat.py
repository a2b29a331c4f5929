"""How a conversation becomes the text and tokens a local model reads: the one rendering function that the
embedded backend uses at run time and the trainer uses for its sequences, so that a model is trained on
exactly what it is later sent (design section 7).

The model's chat template renders the messages (SmolLM2's is plain ChatML); ``tool`` turns become user turns
wrapped in ``<tool_response>`` because the template knows no tool role.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from routines.backends.base import Message

END_OF_TURN = "<|im_end|>"
"""What ends a model turn in ChatML: the stop token the backend decodes until, and the end of every target."""


def chat_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Our messages as the chat template receives them (``tool`` becomes a wrapped ``user`` turn)."""
    out: list[dict[str, str]] = []
    for m in messages:
        if m.role == "tool":
            out.append({"role": "user", "content": f"<tool_response>\n{m.content}\n</tool_response>"})
        else:
            out.append(m.as_dict())
    return out


def render_prompt(tokenizer: Any, messages: Sequence[Message]) -> str:
    """The prompt text for the model's next turn (the generation prompt included)."""
    return str(tokenizer.apply_chat_template(chat_messages(messages), tokenize=False, add_generation_prompt=True))


def encode_prompt(tokenizer: Any, messages: Sequence[Message]) -> list[int]:
    """The prompt's token ids, exactly as the embedded backend feeds them to the model."""
    return list(tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"])


def encode_target(tokenizer: Any, text: str) -> list[int]:
    """The token ids of a model turn ``text`` and the end of turn that stops generation."""
    return list(tokenizer(text + END_OF_TURN, add_special_tokens=False)["input_ids"])


def load_tokenizer(model: str | None = None) -> Any:
    """The tokenizer of a local model (a Hugging Face folder or ``.gguf`` file; default the embedded
    SmolLM2-135M), without loading the model's weights."""
    from pathlib import Path

    from transformers import AutoTokenizer

    from routines.backends.transformers import default_model_path

    path = Path(model) if model else default_model_path()
    if path.is_file():
        return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    return AutoTokenizer.from_pretrained(path, local_files_only=True)
