"""The embedded backend: grammar building (fast, no model) and the real SmolLM2-135M (``model`` marker)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import llguidance
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from memory.variables import VariableMemory
from routines.backends import constrain
from routines.backends.base import Constraint, Message, ToolSpec
from routines.backends.schema import pin_arguments
from routines.backends.scripted import call_text
from routines.calls import parse_tool_call

SALARY = ToolSpec(
    "get_salary",
    "Salary of an employee",
    {
        "type": "object",
        "properties": {"employee_id": {"type": "string"}, "year": {"type": "integer"}},
        "required": ["employee_id"],
    },
)
SEARCH = ToolSpec(
    "search_employee",
    "Find employees by name",
    {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 80},
            "filters": {"type": "object", "properties": {"department": {"type": "string"}}},
            "fields": {"type": "array", "items": {"type": "string", "enum": ["id", "email"]}},
        },
        "required": ["name"],
    },
)


# --- grammar building (no model) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def byte_tokenizer() -> llguidance.LLTokenizer:
    """A 256-token byte-level tokenizer plus EOS: enough to run llguidance matchers without a model."""
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<eos>"])
    return llguidance.LLTokenizer(tok.to_str(), eos_token=tok.token_to_id("<eos>"))


def accepts(tokenizer: llguidance.LLTokenizer, constraint: Constraint, text: str) -> bool:
    """The grammar takes ``text`` completely (and nothing may follow but EOS)."""
    matcher = llguidance.LLMatcher(tokenizer, constrain.grammar_for(constraint), log_level=0)
    return matcher.consume_tokens(tokenizer.tokenize_str(text)) and matcher.is_stopped()


def test_cap_schema_caps_every_string_and_closes_objects() -> None:
    capped = constrain.cap_schema(SEARCH.parameters, 32)
    assert capped["properties"]["name"]["maxLength"] == 32  # tighter cap wins over the schema's 80
    assert capped["properties"]["filters"]["properties"]["department"]["maxLength"] == 32
    assert capped["properties"]["fields"]["items"] == {
        "type": "string",
        "enum": ["id", "email"],
    }  # enums stay
    assert capped["additionalProperties"] is False
    assert capped["properties"]["filters"]["additionalProperties"] is False
    assert "additionalProperties" not in SEARCH.parameters  # the caller's schema is not touched
    small = constrain.cap_schema({"anyOf": [{"type": "string", "maxLength": 4}, {"type": "null"}]}, 32)
    assert small["anyOf"][0]["maxLength"] == 4


def test_tool_call_grammar_takes_a_canonical_call(byte_tokenizer: llguidance.LLTokenizer) -> None:
    constraint = Constraint(tools=(SALARY, SEARCH), max_string_length=16)
    assert accepts(byte_tokenizer, constraint, call_text("get_salary", {"employee_id": "E042", "year": 2024}))
    assert accepts(
        byte_tokenizer, constraint, call_text("search_employee", {"name": "Ada", "fields": ["id"]})
    )


@pytest.mark.parametrize(
    "text",
    [
        call_text("delete_employee", {"employee_id": "E042"}),  # not an allowed tool
        call_text("get_salary", {"employee_id": "E042", "bonus": True}),  # property the schema lacks
        call_text("get_salary", {"employee_id": "E" * 17}),  # longer than max_string_length
        call_text("get_salary", {"year": 2024}),  # required argument missing
        call_text("get_salary", {"employee_id": 42}),  # wrong type
        call_text("get_salary", {"employee_id": "E042"}) * 2,  # two calls
        'Sure! <tool_call>{"name": "get_salary", "arguments": {"employee_id": "E1"}}</tool_call>',  # prose first
        call_text("get_salary", {"employee_id": "E1</tool_call>"}),  # a closing tag inside a string
    ],
)
def test_tool_call_grammar_refuses(byte_tokenizer: llguidance.LLTokenizer, text: str) -> None:
    assert not accepts(byte_tokenizer, Constraint(tools=(SALARY, SEARCH), max_string_length=16), text)


def test_a_free_form_object_argument_is_closed_after_a_few_keys(byte_tokenizer: llguidance.LLTokenizer) -> None:
    """The finish step's free ``data`` object: a small model adds keys in a loop until its token cap."""
    summarize = ToolSpec("summarize", "Write the answer.", {
        "type": "object", "properties": {"data": {"type": "object"}}, "required": ["data"]})
    constraint = Constraint(tools=(summarize,), max_string_length=16)
    keys = constrain.MAX_FREE_PROPERTIES
    assert accepts(byte_tokenizer, constraint, call_text("summarize", {"data": {f"k{i}": "memory_x" for i in range(keys)}}))
    assert not accepts(byte_tokenizer, constraint,
                       call_text("summarize", {"data": {f"k{i}": "memory_x" for i in range(keys + 1)}}))
    assert "maxProperties" not in constrain.cap_schema(summarize.parameters, 16)["properties"]["data"]  # other backends


def test_pinned_arguments_are_written_by_the_grammar(byte_tokenizer: llguidance.LLTokenizer) -> None:
    """A step's bound arguments under ``next``: the grammar writes them (in the schema's order) and takes no
    other value; the model writes the rest."""
    summarize = ToolSpec("summarize", "Write the answer.", {"type": "object", "properties": {
        "question": {"type": "string"}, "data": {"type": "object", "description": "what to summarise"}}})
    pinned = pin_arguments(summarize, {"data": {"salary": "memory_get_salary"}})
    assert pinned.parameters["properties"]["data"] == {"description": "what to summarise",
                                                        "const": {"salary": "memory_get_salary"}}
    constraint = Constraint(tools=(pinned,), max_string_length=16)
    assert accepts(byte_tokenizer, constraint,
                   call_text("summarize", {"question": "pay?", "data": {"salary": "memory_get_salary"}}))
    assert not accepts(byte_tokenizer, constraint, call_text("summarize", {"question": "pay?", "data": {"salary": "x"}}))
    assert not accepts(byte_tokenizer, constraint, call_text("summarize", {"question": "pay?"}))  # now required
    matcher = llguidance.LLMatcher(byte_tokenizer, constrain.grammar_for(constraint), log_level=0)
    matcher.consume_tokens(byte_tokenizer.tokenize_str('<tool_call>{"name": "summarize", "arguments": {"question": "pay?", '))
    assert byte_tokenizer.decode_str(matcher.compute_ff_tokens()) == \
        '"data": {"salary": "memory_get_salary"}}}</tool_call>'
    assert pin_arguments(summarize, {"data": "</tool_call>"}) is summarize  # forced, it would end the call


def test_json_schema_grammar_is_a_bare_value(byte_tokenizer: llguidance.LLTokenizer) -> None:
    constraint = Constraint(json_schema=SALARY.parameters, max_string_length=8)
    assert accepts(byte_tokenizer, constraint, '{"employee_id": "E042"}')
    assert not accepts(byte_tokenizer, constraint, '<tool_call>{"employee_id": "E042"}</tool_call>')
    assert not accepts(byte_tokenizer, constraint, '{"employee_id": "E0420000000"}')


def test_bad_constraints_say_what_to_fix() -> None:
    with pytest.raises(constrain.ConstraintError, match="either"):
        constrain.grammar_for(Constraint(tools=(SALARY,), json_schema={"type": "string"}))
    with pytest.raises(constrain.ConstraintError, match="empty"):
        constrain.grammar_for(Constraint())
    assert not constrain.is_active(Constraint())


def test_guide_masks_forbidden_tokens(byte_tokenizer: llguidance.LLTokenizer) -> None:
    guide = constrain.Guide(byte_tokenizer, Constraint(tools=(SALARY,)), n_sequences=2)
    logits = torch.zeros(2, byte_tokenizer.vocab_size)
    guide.mask(logits)
    allowed = [torch.nonzero(row > float("-inf")).flatten().tolist() for row in logits]
    assert allowed[0] == allowed[1] == byte_tokenizer.tokenize_str("<")  # the call must open with its tag
    for token in byte_tokenizer.tokenize_str(call_text("get_salary", {"employee_id": "E1"})):
        done = guide.advance(0, token)
    assert done


def test_guide_forces_what_the_grammar_leaves_no_choice_about(byte_tokenizer: llguidance.LLTokenizer) -> None:
    guide = constrain.Guide(byte_tokenizer, Constraint(tools=(SALARY,)), n_sequences=1)
    assert not guide.advance(0, byte_tokenizer.tokenize_str("<")[0])
    opening = guide.forced(0)  # one tool: its whole name and the arguments' opening are forced
    assert byte_tokenizer.decode_str(opening).startswith('tool_call>{"name": "get_salary", "arguments": {')
    assert not guide.advance_all(0, opening)
    assert guide.forced(0) == guide.forced(0)  # asking does not move the matcher


@pytest.mark.anyio
async def test_the_next_grammar_at_a_branch_cannot_produce_another_steps_tool(
    byte_tokenizer: llguidance.LLTokenizer,
) -> None:
    """The constraint the executor sends in ``next`` mode at the salary Routine's branch point (a staff user:
    only the band branch is open) compiles to a grammar that takes the band call and no other tool's call."""
    from routines.backends.scripted import ScriptedBackend
    from routines.executor import Executor, ExecutorConfig
    from routines.hub import ToolHub
    from routines.model import Routine
    from tests.fixtures.toy_server import SALARY_ROUTINE, create_toy_server

    replies = [call_text("get_user_profile", {"user_id": "u-staff"}), call_text("search_employee", {"name": "Ada"}),
               call_text("get_salary_band", {"employee_id": "E-001"}),
               call_text("summarize", {"topic": "salary", "data": "memory_get_salary_band"})]
    async with ToolHub({"toy": create_toy_server()}) as hub:
        backend = ScriptedBackend(replies)
        result = await Executor(hub, backend, ExecutorConfig(constrain="next"), variables=VariableMemory).run(
            Routine.from_file(SALARY_ROUTINE), "Ada's pay?", inputs={"employee_name": "Ada"}, user_id="u-staff")
    assert result.ok, result.error
    branch = backend.constraints[2]
    assert branch is not None and [t.name for t in branch.tools] == ["get_salary_band"]
    assert accepts(byte_tokenizer, branch, call_text("get_salary_band", {"employee_id": "E-001"}))
    for other in (call_text("get_salary", {"employee_id": "E-001"}),  # the closed branch
                  call_text("search_employee", {"name": "Ada"}),  # an earlier step
                  call_text("summarize", {"topic": "salary", "data": "memory_get_salary_band"}),  # the next step
                  call_text("delete_records", {"employee_id": "E-001"})):  # a tool no step names
        assert not accepts(byte_tokenizer, branch, other), other


# --- the real model ---------------------------------------------------------------------------

SYSTEM = (
    "You are a tool-calling assistant. Tools:\n"
    + "\n".join(json.dumps(t.as_dict()) for t in (SALARY, SEARCH))
    + '\nReply with <tool_call>{"name": ..., "arguments": {...}}</tool_call>.'
)
QUERIES = [
    "What does Ada Lovelace earn?",
    "Find Grace Hopper.",
    "Salary of employee E042 in 2023?",
    "Who is Alan?",
]


def conversation(query: str, *history: tuple[str, str]) -> list[Message]:
    messages = [Message("system", SYSTEM), Message("user", query)]
    for call, observation in history:
        messages += [Message("assistant", call), Message("tool", observation)]
    return messages


@pytest.fixture(scope="module")
def backend() -> Any:
    from routines.backends.transformers import TransformersBackend

    b = TransformersBackend()
    assert b.loaded.decoder.vocab_size > 0  # load once for the module (seconds)
    return b


@pytest.mark.model
def test_greedy_output_is_deterministic(backend: Any) -> None:
    from routines.backends.transformers import TransformersBackend

    fresh = TransformersBackend(prefix_reuse=False)
    first, second = (fresh.generate([conversation(QUERIES[0])], max_tokens=24)[0] for _ in range(2))
    assert first.text == second.text and first.output_tokens == second.output_tokens > 0
    assert first.meta["constrained"] is False and first.prompt_tokens > 100


@pytest.mark.model
def test_prefix_reuse_gives_the_same_text_as_a_fresh_run(backend: Any) -> None:
    from routines.backends.transformers import TransformersBackend

    step1 = conversation(QUERIES[0])
    step2 = conversation(
        QUERIES[0], (call_text("search_employee", {"name": "Ada Lovelace"}), '{"employee_id": "E7"}')
    )
    reused = TransformersBackend()
    reused.generate([step1], max_tokens=24)
    second = reused.generate([step2], max_tokens=24)[0]
    fresh = TransformersBackend(prefix_reuse=False).generate([step2], max_tokens=24)[0]
    assert second.meta["reused_prompt_tokens"] > 100  # the system prompt and query were not computed again
    assert fresh.meta["reused_prompt_tokens"] == 0
    assert second.text == fresh.text


@pytest.mark.model
def test_a_conversation_in_between_keeps_the_runs_prefix(backend: Any) -> None:
    """Model mode reads the inputs (another prompt) before a run's first call: the run's next step still
    finds its own prefix, and the same text comes out."""
    from routines.backends.base import Message

    step1 = conversation(QUERIES[0])
    step2 = conversation(
        QUERIES[0], (call_text("search_employee", {"name": "Ada Lovelace"}), '{"employee_id": "E7"}')
    )
    backend.generate([step1], max_tokens=24)
    backend.generate([[Message("system", "Extract the values."), Message("user", QUERIES[1])]], max_tokens=8)
    second = backend.generate([step2], max_tokens=24)[0]
    assert second.meta["reused_prompt_tokens"] > 100
    fresh = type(backend)(prefix_reuse=False).generate([step2], max_tokens=24)[0]
    assert second.text == fresh.text


@pytest.mark.model
def test_conversations_too_long_for_the_model_are_named_before_anything_is_decoded(backend: Any) -> None:
    from routines.errors import PromptTooLong

    limit = backend.loaded.decoder.max_positions
    long = conversation("word " * limit)
    with pytest.raises(PromptTooLong, match="the model takes at most 8191.*2 conversations are too long") as info:
        backend.generate([conversation(QUERIES[0]), long, long], max_tokens=4)
    assert info.value.indices == (1, 2)


@pytest.mark.model
@pytest.mark.anyio
async def test_batch_equals_one_by_one(backend: Any) -> None:
    from routines.backends.transformers import TransformersBackend

    conversations = [conversation(q) for q in QUERIES]
    conversations.append(
        conversation(QUERIES[0], (call_text("search_employee", {"name": "Ada"}), '{"id": "E7"}'))
    )
    batch = await backend.complete_batch(conversations, max_tokens=20)
    one_by_one = TransformersBackend(prefix_reuse=False)
    singles = [await one_by_one.complete(c, max_tokens=20) for c in conversations]
    assert [c.text for c in batch] == [c.text for c in singles]
    assert {c.meta["batch_size"] for c in batch} == {len(conversations)}


@pytest.mark.model
@pytest.mark.anyio
async def test_more_conversations_than_slots_take_turns(backend: Any) -> None:
    """Continuous batching: with 2 slots for 5 conversations, each finished row's slot takes the next
    waiting one; every answer is the one it gets alone, free and constrained."""
    from routines.backends.transformers import TransformersBackend

    conversations = [conversation(q) for q in QUERIES]
    conversations.append(
        conversation(QUERIES[0], (call_text("search_employee", {"name": "Ada"}), '{"id": "E7"}'))
    )
    two = TransformersBackend(max_batch=2)
    constraint = Constraint(tools=(SALARY, SEARCH), max_string_length=24)
    for c in (None, constraint):
        turns = await two.complete_batch(conversations, constraint=c, max_tokens=24)
        alone = [await backend.complete(x, constraint=c, max_tokens=24) for x in conversations]
        assert [t.text for t in turns] == [a.text for a in alone]
        assert {t.meta["batch_size"] for t in turns} == {2}
    assert max(t.meta["reused_prompt_tokens"] for t in turns) > turns[0].meta["reused_prompt_tokens"]


@pytest.mark.model
@pytest.mark.anyio
async def test_constrained_call_parses_and_fits_the_schema(backend: Any) -> None:
    constraint = Constraint(tools=(SALARY, SEARCH), max_string_length=24)
    results = await backend.complete_batch(
        [conversation(q) for q in QUERIES[:3]], constraint=constraint, max_tokens=64
    )
    results.append(await backend.complete(conversation(QUERIES[1]), constraint=constraint, max_tokens=64))
    for completion in results:
        assert completion.meta["constrained"] is True and completion.meta["finish_reason"] == "stop"
        call = parse_tool_call(completion.text)
        tool = {t.name: t for t in constraint.tools}[call.name]
        jsonschema.validate(
            call.arguments, constrain.cap_schema(tool.parameters, 24, string_pattern=constrain.NO_CLOSING_TAG)
        )
    found = parse_tool_call(results[1].text)  # "Find Grace Hopper."
    assert (found.name, found.arguments["name"]) == ("search_employee", "Grace Hopper")
    assert results[3].text == results[1].text  # the same request alone


@pytest.mark.model
def test_lora_adapter_is_merged_into_a_copy(backend: Any, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from routines.backends.transformers import TransformersBackend

    base = backend.loaded.model
    before = base.model.layers[0].self_attn.q_proj.weight.clone()
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(copy.deepcopy(base), config).save_pretrained(tmp_path, save_embedding_layers=False)

    tuned = TransformersBackend(adapter=tmp_path)
    merged = tuned.loaded.model.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(merged, before)
    assert torch.equal(base.model.layers[0].self_attn.q_proj.weight, before)  # the shared base is untouched
    messages = [conversation(QUERIES[2])]
    assert (
        tuned.generate(messages, max_tokens=12)[0].text != backend.generate(messages, max_tokens=12)[0].text
    )
    assert tuned.generate(messages, max_tokens=12)[0].meta["adapter"] == str(tmp_path.resolve())
