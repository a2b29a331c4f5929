"""Distilled trajectories as LLaMA-Factory ShareGPT records (paper appendix B.3, design 4.3), and back.

One record per run::

    {"id": "q-01", "system": "<the executor's system prompt (the same at every call)>",
     "tools": "[{\"name\": ..., \"description\": ..., \"parameters\": {...}}, ...]",
     "conversations": [{"from": "human", "value": "<query>"},
                       {"from": "function_call", "value": "{\"name\": ..., \"arguments\": {...}}"},
                       {"from": "observation", "value": "<what the model saw>"}, ...,
                       {"from": "function_call", "value": "<the finish step's call>"}],
     "answer": "...", "query_id": "q-01", "routine_id": "hr.salary", "routine_in_prompt": true}

The conversation ends with the finish step's call, as in the paper's example: after it the model has
nothing left to say, and LLaMA-Factory wants an even number of turns with the last one the model's.
``system`` is the prompt as the executor built it for the run: the conversation is append-only (keys appear
in the observations that create them), so the text before call k is a prefix of the text before call k+1 and
one record teaches all of its calls in one training sequence. LLaMA-Factory ignores the keys its
``dataset_info.json`` entry does not map. Every extra key has one type in every record, so the HF ``json``
loader that LLaMA-Factory uses infers one schema for the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routines.backends.base import Message, ToolSpec
from routines.calls import ToolCall
from routines.prompt import build_messages, tool_line
from routines.trajectory import Call, Trajectory
from trainer.errors import DatasetFormatError

HUMAN, GPT, FUNCTION, OBSERVATION = "human", "gpt", "function_call", "observation"
ODD_TAGS = (HUMAN, OBSERVATION)  # LLaMA-Factory's rule: positions 0, 2, 4, ... are the user's side
EVEN_TAGS = (GPT, FUNCTION)  # positions 1, 3, 5, ... are the model's
DATASET_INFO = "dataset_info.json"
_TOOLS_BLOCK = re.compile(r"<tools>\n(.*?)\n?</tools>", re.DOTALL)


def call_value(call: ToolCall) -> str:
    """A ``function_call`` turn's value: the call as JSON, arguments as the model writes them."""
    return json.dumps(call.as_dict(), ensure_ascii=False)


def build_record(
    *,
    record_id: str,
    trajectory: Trajectory,
    system: str,
    tools: Sequence[ToolSpec],
    query_id: str,
    routine_id: str,
    routine_in_prompt: bool,
) -> dict[str, Any]:
    """One ShareGPT record: a view of a run's trajectory. The last call's observation is not part of the
    conversation (its result is the answer)."""
    calls = trajectory.calls
    if not calls:
        raise ValueError("a record needs at least one call")
    turns: list[dict[str, str]] = [{"from": HUMAN, "value": trajectory.query}]
    for k, call in enumerate(calls):
        turns.append({"from": FUNCTION, "value": call_value(call.call)})
        if k < len(calls) - 1:
            turns.append({"from": OBSERVATION, "value": call.observation})
    return {
        "id": record_id,
        "system": system,
        "tools": json.dumps([t.as_dict() for t in tools], ensure_ascii=False),
        "conversations": turns,
        "answer": trajectory.answer or "",
        "query_id": query_id,
        "routine_id": routine_id,
        "routine_in_prompt": routine_in_prompt,
    }


def dataset_info_entry(file_name: str, *, tools_column: bool = False) -> dict[str, Any]:
    """The ``dataset_info.json`` entry that makes LLaMA-Factory read our records as they are.

    The tool list appears once, in ``system``: the executor's prompt lists the tools itself, so by default the
    ``tools`` column is not mapped (records keep it for our own loader). With ``tools_column`` LLaMA-Factory's
    chat template would write the list into the system text a second time, in its own format: the text
    trained on would no longer be what the executor sends (docs/llamafactory/README.md)."""
    columns = {"messages": "conversations", "system": "system"}
    if tools_column:
        columns["tools"] = "tools"
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": columns,
        "tags": {
            "role_tag": "from", "content_tag": "value", "user_tag": HUMAN, "assistant_tag": GPT,
            "function_tag": FUNCTION, "observation_tag": OBSERVATION,
        },
    }


def write_dataset(
    records: Iterable[dict[str, Any]], out_dir: Path, name: str, *, tools_column: bool = False
) -> tuple[Path, Path]:
    """Write ``<name>.jsonl`` and add (or replace) its entry in ``out_dir/dataset_info.json``, keeping the
    other datasets listed there. Returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data_path = out_dir / f"{name}.jsonl"
    with data_path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    info_path = out_dir / DATASET_INFO
    info: dict[str, Any] = {}
    if info_path.exists():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(f"{info_path} is not valid JSON ({exc.msg}); fix or remove it") from None
    info[name] = dataset_info_entry(data_path.name, tools_column=tools_column)
    info_path.write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return data_path, info_path


# ---- reading back ---------------------------------------------------------------------------------------


@dataclass
class Conversation:
    """One distilled run, read back: what the executor sent before every call and the call it made."""

    id: str
    system: str
    tools: list[ToolSpec]
    query: str
    calls: list[ToolCall]
    observations: list[str]
    """``observations[k]`` followed ``calls[k]``; one fewer than the calls."""
    answer: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def trajectory(self) -> Trajectory:
        """The run the record was cut from (step labels and results are not kept in a record)."""
        observations = [*self.observations, ""][: len(self.calls)]
        calls = tuple(Call(step="", tool=c.name, arguments=c.arguments, observation=o)
                      for c, o in zip(self.calls, observations, strict=True))
        return Trajectory(query=self.query, calls=calls, answer=self.answer, query_id=self.id)

    def messages(self, k: int) -> list[Message]:
        """The messages the executor sent to the model before call ``k`` (same builder, byte for byte)."""
        return build_messages(self.system, self.query, self.trajectory().calls[:k])

    def target(self, k: int) -> str:
        """The model output that makes call ``k``, as the executor parses it."""
        return self.calls[k].text()

    def steps(self) -> Iterator[tuple[list[Message], str]]:
        """(prompt messages, target text) for every call: per-step supervision."""
        for k in range(len(self.calls)):
            yield self.messages(k), self.target(k)


def _tools_of(value: Any, where: str, problems: list[str]) -> list[ToolSpec]:
    if not isinstance(value, str):
        problems.append(f"{where}: 'tools' must be a JSON string (LLaMA-Factory reads it as text)")
        return []
    try:
        listed = json.loads(value)
    except json.JSONDecodeError as exc:
        problems.append(f"{where}: 'tools' is not valid JSON ({exc.msg})")
        return []
    if not isinstance(listed, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in listed):
        problems.append(f"{where}: 'tools' must be a JSON list of {{name, description, parameters}} objects")
        return []
    return [ToolSpec.from_mcp(t) for t in listed]


def _call_of(value: Any, where: str, problems: list[str]) -> ToolCall | None:
    try:
        data = json.loads(value) if isinstance(value, str) else None
    except json.JSONDecodeError as exc:
        problems.append(f"{where}: function_call value is not valid JSON ({exc.msg})")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(data.get("arguments"), dict):
        problems.append(f"{where}: function_call value must be {{\"name\": str, \"arguments\": object}}")
        return None
    return ToolCall(data["name"], data["arguments"])


def check_record(record: Any, where: str = "record") -> tuple[Conversation | None, list[str]]:
    """Check one record against LLaMA-Factory's ShareGPT rules (roles alternate human/observation and
    function_call/gpt, an even number of turns, tools a JSON list) and ours (function_call values are calls
    of listed tools; the system prompt lists the same tools in the same order).
    Returns the conversation (None when unreadable) and the problems found."""
    problems: list[str] = []
    if not isinstance(record, dict):
        return None, [f"{where}: not a JSON object"]
    where = f"{where} (id {record['id']})" if isinstance(record.get("id"), str) else where
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        return None, [f"{where}: 'conversations' must be a non-empty list"]
    system = record.get("system", "")
    if not isinstance(system, str):
        problems.append(f"{where}: 'system' must be a string")
        system = ""
    tools = _tools_of(record.get("tools"), where, problems)
    calls: list[ToolCall] = []
    observations: list[str] = []
    for i, turn in enumerate(turns):
        role, value = (turn.get("from"), turn.get("value")) if isinstance(turn, dict) else (None, None)
        allowed = ODD_TAGS if i % 2 == 0 else EVEN_TAGS
        if role not in allowed:
            problems.append(f"{where}: turn {i} is {role!r}; turns {'0, 2, 4' if i % 2 == 0 else '1, 3, 5'}, ... "
                            f"must be {' or '.join(allowed)}")
            break
        if not isinstance(value, str):
            problems.append(f"{where}: turn {i} value must be a string")
            break
        if role == HUMAN and i > 0:
            problems.append(f"{where}: turn {i} is a second human turn; a distilled run has one query")
        elif role == FUNCTION:
            call = _call_of(value, f"{where} turn {i}", problems)
            if call is not None:
                calls.append(call)
        elif role == OBSERVATION:
            observations.append(value)
    if len(turns) % 2:
        problems.append(f"{where}: {len(turns)} turns; LLaMA-Factory needs an even number ending with the model's turn")
    names = [t.name for t in tools]
    for call in calls:
        if names and call.name not in names:
            problems.append(f"{where}: function_call {call.name!r} is not in 'tools'")
    block = _TOOLS_BLOCK.search(system)
    if block and tools and block.group(1).split("\n") != [tool_line(t) for t in tools]:
        problems.append(f"{where}: 'tools' is not the tool list of the system prompt, in its order")
    if problems:
        return None, problems
    known = {"id", "system", "tools", "conversations", "answer"}
    return Conversation(
        id=str(record.get("id", where)), system=system, tools=tools, query=turns[0]["value"], calls=calls,
        observations=observations, answer=str(record.get("answer", "")),
        extra={k: v for k, v in record.items() if k not in known},
    ), []


def _read_records(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        if not isinstance(data, list):
            raise DatasetFormatError(f"{path}: a .json dataset must be a list of records")
        return data
    records = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(f"{path} line {n}: not valid JSON ({exc.msg})") from None
    return records


def _data_file(path: Path, name: str | None) -> Path:
    """A dataset file, or the file a directory's ``dataset_info.json`` names."""
    if not path.is_dir():
        if not path.exists():
            raise DatasetFormatError(f"no dataset at {path}")
        return path
    info_path = path / DATASET_INFO
    if not info_path.exists():
        raise DatasetFormatError(f"{path} has no {DATASET_INFO}; give the dataset file itself")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if name is None:
        if len(info) != 1:
            raise DatasetFormatError(f"{info_path} lists {len(info)} datasets ({', '.join(info)}); name one")
        name = next(iter(info))
    if name not in info:
        raise DatasetFormatError(f"{info_path} has no dataset {name!r}; it has {', '.join(info) or 'none'}")
    entry = info[name]
    if entry.get("formatting") != "sharegpt" or entry.get("columns", {}).get("messages") != "conversations":
        raise DatasetFormatError(f"{info_path}: {name!r} is not a ShareGPT entry with messages=conversations")
    return path / entry["file_name"]


def load_dataset(path: str | Path, name: str | None = None) -> list[Conversation]:
    """Read a distilled dataset (a ``.jsonl``/``.json`` file, or a directory with ``dataset_info.json``) into
    conversations, checking every record. Raises DatasetFormatError listing the first problems."""
    data_path = _data_file(Path(path), name)
    conversations: list[Conversation] = []
    problems: list[str] = []
    for i, record in enumerate(_read_records(data_path)):
        conv, found = check_record(record, f"record {i}")
        problems += found
        if conv is not None:
            conversations.append(conv)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise DatasetFormatError(f"{data_path}: {len(problems)} problem(s): {shown}")
    return conversations
