"""The natural-language form (paper B.1): rendering, parsing back, and what planner models write in practice."""

from __future__ import annotations

from pathlib import Path

import pytest

from routines.model import Routine, Step
from routines.render import NL_FIELDS, RoutineParseError, parse_routine, render_routine, render_step

EXAMPLES = Path(__file__).resolve().parents[2] / "routines" / "examples"
IO_FIELDS = (*NL_FIELDS, "input", "output")

# The paper's appendix B.2 example (employee handbook check), written out as our own fixture.
HANDBOOK = Routine(
    id="hr.handbook",
    name="Handbook check",
    steps=[
        Step(
            step="1",
            name="Get announcements",
            description="Download the latest employee handbook file from the company’s internal system",
            tool="fetch_latest_announcements",
            type="node",
        ),
        Step(
            step="2",
            name="Download handbook",
            description="Obtain the company’s most recent official announcement for consistency check with the "
            "employee handbook",
            tool="download_file",
            type="node",
        ),
        Step(
            step="3",
            name="Read PDF content",
            description="Use text parsing tools to extract all text content from the employee handbook PDF file",
            tool="read_pdf",
            type="node",
        ),
        Step(
            step="4",
            name="Compare text differences",
            description="Compare the relevant content in the employee handbook with the company’s latest "
            "announcement word by word",
            tool="compare_texts",
            type="finish",
        ),
    ],
)

# Paper appendix B.1 as the paper prints it (step 4 says "using the ... tool").
HANDBOOK_B1 = """<routines>
Step 1. Get announcements: Download the latest employee handbook file from the company’s internal system, use the fetch_latest_announcements tool;
Step 2. Download handbook: Obtain the company’s most recent official announcement for consistency check with the employee handbook, use the download_file tool;
Step 3. Read PDF content: Use text parsing tools to extract all text content from the employee handbook PDF file, use the read_pdf tool;
Step 4. Compare text differences: Compare the relevant content in the employee handbook with the company’s latest announcement word by word, using the compare_texts tool, and end the workflow;
</routines>"""


def nl(routine: Routine, fields: tuple[str, ...] = NL_FIELDS) -> list[dict[str, object]]:
    """The fields the natural-language form carries, step by step."""
    return [{f: getattr(s, f) for f in fields} for s in routine.steps]


@pytest.fixture
def salary() -> Routine:
    return Routine.from_file(EXAMPLES / "salary.json")


# ---- the paper's example ------------------------------------------------------------------------------


def test_paper_example_renders_as_b1() -> None:
    text = render_routine(HANDBOOK)
    lines = text.splitlines()
    assert lines == [
        ln.replace("using the compare_texts", "use the compare_texts")
        for ln in HANDBOOK_B1.splitlines()[1:-1]
    ]


def test_paper_b1_text_parses_to_b2() -> None:
    parsed = parse_routine(HANDBOOK_B1, name="Handbook check", routine_id="hr.handbook")
    assert nl(parsed) == nl(HANDBOOK)
    assert parsed.id == "hr.handbook" and parsed.name == "Handbook check"


def test_paper_example_round_trips() -> None:
    assert nl(parse_routine(render_routine(HANDBOOK))) == nl(HANDBOOK)


# ---- rendering ----------------------------------------------------------------------------------------


def test_salary_example_renders_branches_as_bullets(salary: Routine) -> None:
    assert render_routine(salary) == (
        "Step 1. Get requester: Look up the current user's role, use the get_user_profile tool;\n"
        "Step 2. Find employee: Search the employee by name, use the search_employee tool;\n"
        "Step 3. Check role: Branch on the requester's role;\n"
        "- Branch 3-1 Step 1. Full salary: If the user is in HR, get the salary, use the get_salary tool;\n"
        "- Branch 3-2 Step 1. Salary band: Otherwise get the salary band, use the get_salary_band tool;\n"
        "Step 4. Answer: Summarise for the user, use the summarize tool, and end the workflow;"
    )


def test_io_switch_adds_input_and_output_descriptions(salary: Routine) -> None:
    plain = render_routine(salary)
    with_io = render_routine(salary, io=True)
    assert "[input:" not in plain
    assert (
        "Step 2. Find employee: Search the employee by name [input: employee name from the question] "
        "[output: employee id], use the search_employee tool;"
    ) in with_io.splitlines()


def test_no_tools_switch_leaves_every_tool_name_out(salary: Routine) -> None:
    text = render_routine(salary, tool_names=False)
    assert not any(tool in text for tool in salary.tools())
    assert " tool" not in text
    assert text.splitlines()[-1] == "Step 4. Answer: Summarise for the user, and end the workflow;"


def test_header_names_the_routine(salary: Routine) -> None:
    first = render_routine(salary, header=True).splitlines()[0]
    assert (
        first
        == "Routine: Salary enquiry - Tell an HR user an employee's salary; others get the salary band only."
    )
    assert (
        render_routine(Routine(id="x.y", steps=salary.steps), header=True).splitlines()[0] == "Routine: x.y"
    )


def test_header_parses_back_to_name_and_description(salary: Routine) -> None:
    parsed = parse_routine(render_routine(salary, header=True))
    assert parsed.name == salary.name
    assert parsed.description == salary.description
    assert nl(parsed) == nl(salary)


def test_branch_step_never_shows_a_tool() -> None:
    step = Step(step="3", name="Check", description="Branch on role", tool="get_role", type="branch")
    assert render_step(step) == "Step 3. Check: Branch on role;"


def test_step_without_description() -> None:
    assert (
        render_step(Step(step="1", name="Look up", tool="lookup")) == "Step 1. Look up, use the lookup tool;"
    )


def test_the_keys_of_a_bound_object_are_named_and_read_back_as_the_description() -> None:
    step = Step(step="4", name="Answer", description="Write the answer with the salary template", tool="summarize",
                type="finish", args={"template": "salary", "data": {"employee": "{{steps.1}}", "band": "{{steps.3}}"}})
    text = render_step(step, io=True)
    assert text == ("Step 4. Answer: Write the answer with the salary template, with the data keys employee and band, "
                    "use the summarize tool, and end the workflow;")
    (back,) = parse_routine(text).steps
    assert (back.name, back.description, back.tool, back.type) == ("Answer", step.description, "summarize", "finish")
    one = step.model_copy(update={"args": {"data": {"employee": "{{steps.1}}"}}})
    assert ", with the data keys employee, use" in render_step(one)


# ---- round trip ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("io", [False, True])
def test_salary_round_trip(salary: Routine, io: bool) -> None:
    parsed = parse_routine(render_routine(salary, io=io))
    assert nl(parsed, IO_FIELDS if io else NL_FIELDS) == nl(salary, IO_FIELDS if io else NL_FIELDS)
    if not io:
        assert all(s.input is None and s.output is None for s in parsed.steps)


def test_round_trip_without_tool_names_keeps_structure(salary: Routine) -> None:
    parsed = parse_routine(render_routine(salary, tool_names=False))
    assert nl(parsed, ("step", "name", "description", "type")) == nl(
        salary, ("step", "name", "description", "type")
    )
    assert all(s.tool is None for s in parsed.steps)


@pytest.mark.parametrize(
    "description",
    [
        "Summarise for the user.",  # its own full stop
        "Check the totals;",
        "Collect a, b, and c,",
        "Ask (politely)",
        "Note: rates change",  # a colon inside the description
        "比较文本。",
        "Use the results from step 2",
        "Compare, word by word",
    ],
)
@pytest.mark.parametrize(
    ("tool", "kind"), [("summarize", "node"), (None, "node"), ("summarize", "finish"), (None, "finish")]
)
def test_descriptions_keep_their_own_punctuation(description: str, tool: str | None, kind: str) -> None:
    routine = Routine(steps=[Step(step="1", name="Answer", description=description, tool=tool, type=kind)])
    assert nl(parse_routine(render_routine(routine))) == nl(routine)


def test_multi_step_branches_and_branch_finish_round_trip() -> None:
    routine = Routine(
        steps=[
            Step(step="1", name="Look up", tool="lookup"),
            Step(step="2", name="Decide", description="By status", type="branch"),
            Step(
                step="2-1_1", name="Fetch", tool="fetch", type="branchnode", input="the id", output="a record"
            ),
            Step(step="2-1_2", name="Report", tool="report", type="finish"),
            Step(step="2-2_1", name="Skip", tool="note", type="branchnode"),
            Step(step="3", name="Close", tool="close", type="finish"),
        ]
    )
    for io in (False, True):
        assert nl(parse_routine(render_routine(routine, io=io)), IO_FIELDS if io else NL_FIELDS) == nl(
            routine, IO_FIELDS if io else NL_FIELDS
        )


# ---- what planners write --------------------------------------------------------------------------------


def one(text: str) -> Step:
    routine = parse_routine(text)
    assert len(routine.steps) == 1, routine.steps
    return routine.steps[0]


@pytest.mark.parametrize(
    "text",
    [
        "Step 2. Find employee: Search by name, use the search_employee tool;",
        "- Step 2. Find employee: Search by name, use the search_employee tool;",
        "* Step 2. Find employee: Search by name, use the search_employee tool.",
        "• Step 2. Find employee: Search by name, using the search_employee tool",
        "2. Step 2. Find employee: Search by name, call search_employee;",
        "Step 2: Find employee: Search by name, call the `search_employee` tool;",
        "  Step 2.  Find employee:  Search by name , use the search_employee tool ;  ",
        "Step 2. Find employee: Search by name; use the search_employee tool;",
        "Step 2. Find employee: Search by name with the search_employee tool;",
        "Step 2．Find employee：Search by name，use the search_employee tool；",
        "步骤2：Find employee：Search by name，使用search_employee工具；",
        "第2步：Find employee：Search by name，调用 search_employee 工具。",
        "第二步：Find employee：Search by name，使用search_employee工具",
    ],
)
def test_planner_styles_of_a_tool_step(text: str) -> None:
    step = one(text)
    assert (step.step, step.name, step.description, step.tool, step.type) == (
        "2",
        "Find employee",
        "Search by name",
        "search_employee",
        "node",
    )


@pytest.mark.parametrize(
    "text",
    [
        "Step 4. Answer: Summarise, use the summarize tool, and end the workflow;",
        "Step 4. Answer: Summarise, use the summarize tool and end the workflow.",
        "Step 4. Answer: Summarise, use the summarize tool; and end the workflow;",
        "Step 4. Answer: Summarise, using the summarize tool, then terminate.",
        "Step 4. Answer: Summarise, call summarize, terminate",
        "Step 4. Answer: Summarise, use the summarize tool, and terminate the workflow;",
        "Step 4. Answer: Summarise, use the summarize tool, and finish the workflow;",
        "Step 4. Answer: Summarise, and end the workflow, use the summarize tool;",
        "步骤4：Answer：Summarise，使用summarize工具，并结束工作流；",
        "步骤4：Answer：Summarise，使用summarize工具并结束工作流。",
        "第四步：Answer：Summarise，调用summarize工具，结束流程",
    ],
)
def test_planner_styles_of_a_finish_step(text: str) -> None:
    step = one(text)
    assert (step.step, step.name, step.description, step.tool, step.type) == (
        "4",
        "Answer",
        "Summarise",
        "summarize",
        "finish",
    )


@pytest.mark.parametrize(
    "text",
    [
        "- Branch 3-1 Step 1. Full salary: If HR, get the salary, use the get_salary tool;",
        "Branch 3-1, Step 1: Full salary: If HR, get the salary, use the get_salary tool;",
        "Step 3-1_1. Full salary: If HR, get the salary, use the get_salary tool;",
        "  * Branch 3–1 Step 1. Full salary: If HR, get the salary, using the get_salary tool.",
        "分支3-1 步骤1：Full salary：If HR, get the salary，使用get_salary工具；",
        "- 分支3-1 第1步：Full salary：If HR, get the salary，调用get_salary工具",
    ],
)
def test_planner_styles_of_a_branch_step(text: str) -> None:
    step = one(text)
    assert (step.step, step.name, step.description, step.tool, step.type) == (
        "3-1_1",
        "Full salary",
        "If HR, get the salary",
        "get_salary",
        "branchnode",
    )


def test_blank_lines_tags_and_prose_are_skipped() -> None:
    text = """Here is the Routine you asked for:

<routines>
Step 1. Get requester: Look up the role, use the get_user_profile tool;

Step 2. Check role: Branch on the role;

- Branch 2-1 Step 1. Full salary: Get the salary, use the get_salary tool;
- Branch 2-2 Step 1. Band: Get the band, use the get_salary_band tool;

Step 3. Answer: Summarise, use the summarize tool, and end the workflow;
</routines>
Let me know if you need changes."""
    routine = parse_routine(text)
    assert [(s.step, s.type, s.tool) for s in routine.steps] == [
        ("1", "node", "get_user_profile"),
        ("2", "branch", None),
        ("2-1_1", "branchnode", "get_salary"),
        ("2-2_1", "branchnode", "get_salary_band"),
        ("3", "finish", "summarize"),
    ]


def test_chinese_routine() -> None:
    text = """步骤1：获取公告：从公司内部系统下载最新公告，使用fetch_latest_announcements工具；
步骤2：判断：根据公告类型判断；
分支2-1 步骤1：下载手册：下载员工手册，使用download_file工具；
分支2-2 步骤1：跳过：记录无需下载，调用log_note工具；
第三步：比较：逐字比较文本，使用compare_texts工具，并结束工作流。"""
    routine = parse_routine(text)
    assert [(s.step, s.name, s.description, s.tool, s.type) for s in routine.steps] == [
        ("1", "获取公告", "从公司内部系统下载最新公告", "fetch_latest_announcements", "node"),
        ("2", "判断", "根据公告类型判断", None, "branch"),
        ("2-1_1", "下载手册", "下载员工手册", "download_file", "branchnode"),
        ("2-2_1", "跳过", "记录无需下载", "log_note", "branchnode"),
        ("3", "比较", "逐字比较文本", "compare_texts", "finish"),
    ]


def test_chinese_text_that_merely_mentions_ending_is_not_a_finish() -> None:
    step = one("步骤3：检查：查询会议是否结束")
    assert (step.description, step.type) == ("查询会议是否结束", "node")


def test_bare_mention_of_a_tool_is_not_a_tool_clause() -> None:
    step = one("Step 1. Search: Look in the database, use the tool;")
    assert step.tool is None
    assert step.description == "Look in the database, use the tool"


def test_io_descriptions_in_planner_text() -> None:
    step = one("Step 2. Find: Search [输入: 姓名] [output: employee id], use the search_employee tool;")
    assert (step.input, step.output, step.description, step.tool) == (
        "姓名",
        "employee id",
        "Search",
        "search_employee",
    )


def test_parse_sets_name_and_id() -> None:
    routine = parse_routine(
        "Step 1. A: b, use the c tool, and end the workflow;", name="Mine", routine_id="x.mine"
    )
    assert (routine.name, routine.id) == ("Mine", "x.mine")


@pytest.mark.parametrize(
    "text", ["", "   \n\n", "Hello, I cannot help with that.", "<routines>\n</routines>", "Steps: none"]
)
def test_text_without_steps_is_a_parse_error_with_the_expected_form(text: str) -> None:
    with pytest.raises(RoutineParseError, match="Step 1. Name: description"):
        parse_routine(text)
