"""The natural-language form of a Routine (paper appendix B.1) and its parser.

Rendered form, one step a line::

    Step 1. Get requester: Look up the current user's role, use the get_user_profile tool;
    Step 3. Check role: Branch on the requester's role;
    - Branch 3-1 Step 1. Full salary: If the user is in HR, get the salary, use the get_salary tool;
    Step 4. Answer: Summarise for the user, use the summarize tool, and end the workflow;

With ``io=True`` a step carries ``[input: ...] [output: ...]`` before its tool clause. ``parse_routine``
reads that form back, and also what planner models write in practice: bullets, full-width punctuation,
"use the X tool" / "using the X tool" / "call X", "and end the workflow" / "terminate", blank lines,
Chinese step labels (步骤1 / 第1步 / 第一步 / 分支3-1 步骤1, 使用X工具, 并结束工作流). A description keeps
punctuation of its own (only the line's closing mark and the clauses are taken off).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from routines.errors import RoutineParseError
from routines.model import Label, Routine, Step

FINISH_CLAUSE = "and end the workflow"


# ---- rendering --------------------------------------------------------------------------------------


def _listing(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def object_keys(step: Step) -> str:
    """The keys of the objects a step's ``args`` bind, as words (", with the data keys employee and band"): the
    executor reads descriptions, not ``args``, and a key is a name no description gives it otherwise (the
    ``data`` of a summary). Empty for a step that binds no object. Not part of the text retrieval embeds."""
    return "".join(f", with the {name} keys {_listing(list(value))}"
                   for name, value in (step.args or {}).items() if isinstance(value, dict) and value)


def render_step(step: Step, *, io: bool = False, tool_names: bool = True) -> str:
    label = step.label
    head = f"Branch {label.main}-{label.branch} Step {label.index}." if label.is_branch else f"Step {label.main}."
    body = step.name
    if step.description:
        body = f"{body}: {step.description}" if body else step.description
    body += object_keys(step)
    if io:
        if step.input:
            body += f" [input: {step.input}]"
        if step.output:
            body += f" [output: {step.output}]"
    if step.tool and tool_names and step.type != "branch":
        body += f", use the {step.tool} tool"
    if step.type == "finish":
        body += f", {FINISH_CLAUSE}"
    line = f"{head} {body};"
    return f"- {line}" if label.is_branch else line


def render_routine(routine: Routine, *, io: bool = False, tool_names: bool = True, header: bool = False) -> str:
    """The Routine as the executor model reads it. ``io`` adds input/output descriptions; ``tool_names=False``
    leaves tool names out (both are ablations of paper 5.3.1); ``header`` starts with a ``Routine:`` line
    naming it (used when several candidate Routines share a prompt)."""
    lines = []
    if header:
        title = routine.name or routine.id or "Routine"
        lines.append(f"Routine: {title} - {routine.description}" if routine.description else f"Routine: {title}")
    lines.extend(render_step(s, io=io, tool_names=tool_names) for s in routine.steps)
    return "\n".join(lines)


# ---- parsing ----------------------------------------------------------------------------------------

_NUM = r"(\d+|[零〇一二两三四五六七八九十百]+)"  # 步骤3 / 第三步
_BULLET = re.compile(r"^\s*(?:[-*•·●▪◦]|\d+[.)](?=\s*(?:Step|Branch|步骤|分支|第)))\s*")
_BRANCH_LABEL = re.compile(
    rf"^(?:Branch|分支)\s*{_NUM}\s*[-–—_]\s*{_NUM}\s*[,，]?\s*(?:Step|步骤|第)?\s*{_NUM}\s*步?\s*[.．:：、)]?\s*",
    re.IGNORECASE,
)
_PAPER_LABEL = re.compile(r"^(?:Step|步骤)\s*(\d+)-(\d+)_(\d+)\s*[.．:：、)]?\s*", re.IGNORECASE)
_MAIN_LABEL = re.compile(rf"^(?:Step|步骤|第)\s*{_NUM}\s*步?\s*[.．:：、)]?\s*", re.IGNORECASE)
_END = re.compile(r"[\s;；.。]+$")
_LAST_MARK = re.compile(r"\s*[;；.。]?\s*$")  # the one terminator that closes a step line
_SEP = r"(?:[,，;；]\s*|\s+|^)"
_ROUTINE_WORD = r"(?:the\s+)?(?:workflow|process|routine)"
_FINISH = re.compile(
    rf"{_SEP}(?:and\s+)?(?:then\s+)?(?:end(?:s)?\s+{_ROUTINE_WORD}|terminate(?:s)?(?:\s+{_ROUTINE_WORD})?"
    rf"|finish(?:es)?\s+{_ROUTINE_WORD})$"
    r"|(?:(?:[,，;；、]\s*|\s+|^)(?:并且?|然后)?|并且?|然后)(?:结束|终止)(?:工作流程?|流程|工作流|任务)?$",
    re.IGNORECASE,
)
_TOOL = re.compile(
    rf"{_SEP}(?:and\s+)?(?:then\s+)?(?:use|using|uses|with|via)\s+(?:the\s+)?`?(?!the\s)([A-Za-z0-9_][A-Za-z0-9_.\-]*)`?"
    r"\s+tool$"
    r"|(?:[,，;；]\s*|^)(?:and\s+)?(?:then\s+)?(?:call|calling|calls|invoke|invoking)\s+(?:the\s+)?"
    r"`?([A-Za-z_][A-Za-z0-9_.\-]*)`?(?:\s+tool)?$"
    r"|[,，;；、]?\s*(?:并且?|然后)?(?:使用|调用)\s*`?([A-Za-z_][A-Za-z0-9_.\-]*)`?\s*(?:工具)?$",
    re.IGNORECASE,
)
_IO = re.compile(r"\s*\[(input|output|输入|输出)\s*[:：]\s*([^\[\]]*)\]\s*$", re.IGNORECASE)
_KEYS = re.compile(r",\s*with the [A-Za-z0-9_]+ keys [A-Za-z0-9_]+(?:(?:,| and) [A-Za-z0-9_]+)*$")
"""The clause :func:`object_keys` adds (it comes from ``args``, which the text form does not carry back)."""
_NAME_SEP = re.compile(r"\s*[:：]\s+|\s*：\s*")
_HEADER = re.compile(r"^Routine\s*[:：]\s*(.*)$", re.IGNORECASE)
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def _number(text: str) -> int:
    """``12`` or a Chinese numeral up to 999 (``十二``, ``二十``, ``一百零五``)."""
    if text.isdigit():
        return int(text)
    total, digit = 0, 0
    for ch in text:
        if ch in ("十", "百"):
            total += (digit or 1) * (10 if ch == "十" else 100)
            digit = 0
        else:
            digit = digit * 10 + _CN_DIGITS[ch] if digit else _CN_DIGITS[ch]
    return total + digit


@dataclass
class _Line:
    label: Label
    name: str
    description: str
    tool: str | None
    finish: bool
    io: dict[str, str] = field(default_factory=dict)


def _peel(pattern: re.Pattern[str], text: str) -> tuple[re.Match[str] | None, str]:
    """Match ``pattern`` at the end of ``text`` (ignoring trailing punctuation); return the text before it."""
    core = _END.sub("", text)
    m = pattern.search(core)
    if m is None:
        return None, text
    return m, core[: m.start()].rstrip()


def _split_tail(text: str) -> tuple[str, str | None, bool, dict[str, str]]:
    """Peel the finish clause, the tool clause and I/O descriptions off the end of a step's text.

    Only the line's own closing mark (one ``;`` or ``.``) and the clauses are removed, so a description
    that ends in punctuation of its own (``Summarise for the user.``) keeps it."""
    text = _LAST_MARK.sub("", text, count=1)
    m, text = _peel(_FINISH, text)
    finish = m is not None
    tool = None
    m, text = _peel(_TOOL, text)
    if m is not None:
        tool = next(g for g in m.groups() if g)
    io: dict[str, str] = {}
    while True:
        m, text = _peel(_IO, text)
        if m is None:
            break
        key = "input" if m.group(1).lower() in ("input", "输入") else "output"
        io.setdefault(key, m.group(2).strip())
    if not finish:  # "..., and end the workflow, use the X tool": the clauses in the other order
        m, text = _peel(_FINISH, text)
        finish = m is not None
    while (m := _KEYS.search(text)) is not None:
        text = text[: m.start()].rstrip()
    return text.strip(), tool, finish, io


def _read_line(raw: str) -> _Line | None:
    line = _BULLET.sub("", raw.strip()).strip()
    m = _BRANCH_LABEL.match(line) or _PAPER_LABEL.match(line)
    if m:
        label = Label(_number(m.group(1)), _number(m.group(2)), _number(m.group(3)))
    else:
        m = _MAIN_LABEL.match(line)
        if not m:
            return None
        label = Label(_number(m.group(1)))
    body, tool, finish, io = _split_tail(line[m.end() :])
    parts = _NAME_SEP.split(body, maxsplit=1)
    name, description = (parts[0], parts[1]) if len(parts) == 2 else (body, "")
    return _Line(label, name.strip(), description.strip(), tool, finish, io)


def parse_routine(text: str, *, name: str = "", routine_id: str | None = None) -> Routine:
    """Read the natural-language form back into a Routine. Lines that are not steps (blank lines,
    ``<routines>`` tags, prose) are skipped; a text without any step raises :class:`RoutineParseError`."""
    lines: list[_Line] = []
    description = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        header = _HEADER.match(stripped)
        if header and not lines:
            title, _, description = header.group(1).partition(" - ")
            name = name or title.strip()
            continue
        parsed = _read_line(stripped)
        if parsed is not None:
            lines.append(parsed)
    if not lines:
        raise RoutineParseError(
            "no step lines found; write one step a line as 'Step 1. Name: description, use the TOOL tool;' "
            "and branches as 'Branch 3-1 Step 1. ...'"
        )
    branched = {ln.label.main for ln in lines if ln.label.is_branch}
    steps = []
    for ln in lines:
        if ln.finish:
            kind = "finish"
        elif ln.label.is_branch:
            kind = "branchnode"
        elif ln.label.main in branched and ln.tool is None:
            kind = "branch"
        else:
            kind = "node"
        steps.append(
            Step(
                step=str(ln.label),
                name=ln.name,
                description=ln.description,
                tool=ln.tool,
                type=kind,
                input=ln.io.get("input"),
                output=ln.io.get("output"),
            )
        )
    return Routine(id=routine_id, name=name, description=description.strip(), steps=steps)


NL_FIELDS = ("step", "name", "description", "tool", "type")
"""Step fields the natural-language form carries (plus ``input``/``output`` when rendered with ``io``)."""
