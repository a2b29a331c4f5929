"""Variable memory: long values go behind ``memory_*`` keys, and keys come back as the real, typed values."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from memory.variables import NESTED_BUDGET, VariableMemory, calls_as_written

MEMBERS = [f"Member {i:02d}" for i in range(40)]
LIST_PARAM = {"type": "array", "items": {"type": "string"}}
TEXT_PARAM = {"type": "string"}


def test_a_long_field_becomes_a_key_and_short_fields_stay() -> None:
    memory = VariableMemory(threshold=100)
    shown = memory.compress({"team": "red", "members": MEMBERS}, hint="list_team")
    assert shown == {"team": "red", "members": "memory_members"}
    assert memory.values == {"memory_members": MEMBERS}


def test_a_short_result_is_shown_unchanged_and_nothing_is_stored() -> None:
    memory = VariableMemory(threshold=100)
    assert memory.compress({"employee_id": "E-1", "role": "hr"}) == {"employee_id": "E-1", "role": "hr"}
    assert memory.compress("a short text") == "a short text"
    assert memory.values == {}


def test_a_long_result_that_is_not_an_object_is_stored_whole_under_the_tool_hint() -> None:
    memory = VariableMemory(threshold=100)
    assert memory.compress(MEMBERS, hint="list_team") == "memory_list_team"
    assert memory.compress("policy text " * 30, hint="get-policy text") == "memory_get_policy_text"


def test_an_object_of_many_medium_fields_keeps_its_short_fields_in_sight() -> None:
    memory = VariableMemory(threshold=200, preview_chars=40)
    result = {"employee_id": "E-1", "a": "x" * 90, "b": "y" * 120, "c": "z" * 60, "d": "w" * 30}
    shown = memory.compress(result, hint="report")
    # The longest fields become keys until the object is short; the id (what the next step needs) stays.
    assert shown == {"employee_id": "E-1", "a": "memory_a", "b": "memory_b", "c": "z" * 60, "d": "w" * 30}
    assert memory.resolve(shown) == result


def test_fields_that_a_key_and_preview_would_not_shorten_are_never_stored() -> None:
    memory = VariableMemory(threshold=200, preview_chars=80)
    result = {f"field{i}": "x" * 150 for i in range(3)}  # long together, each under twice a preview
    assert memory.compress(result, hint="report") == result
    assert memory.values == {}


def test_keys_are_unique_and_the_same_value_keeps_its_key() -> None:
    memory = VariableMemory(threshold=10)
    first = memory.put(MEMBERS, "members")
    second = memory.put(MEMBERS[::-1], "members")
    again = memory.put(list(MEMBERS), "members")
    assert (first, second, again) == ("memory_members", "memory_members_2", "memory_members")


def test_the_preview_is_short_and_says_how_long_the_value_is() -> None:
    memory = VariableMemory(threshold=10, preview_chars=40)
    key = memory.put(MEMBERS, "members")
    preview = memory.previews()[key]
    assert preview.startswith('["Member 00", "Member 01"')
    assert len(preview) < 80
    assert f"({len(json.dumps(MEMBERS)):,} characters)" in preview


def test_a_whole_value_key_resolves_to_the_stored_list_with_its_type() -> None:
    memory = VariableMemory(threshold=10)
    key = memory.put(MEMBERS, "members")
    assert memory.resolve_args({"members": key}, {"properties": {"members": LIST_PARAM}}) == {"members": MEMBERS}
    assert memory.resolve(f"  {key} ") == MEMBERS  # stray spaces around the key


def test_a_list_passed_to_a_string_parameter_arrives_as_json_text() -> None:
    memory = VariableMemory(threshold=10)
    key = memory.put(MEMBERS, "members")
    text = memory.resolve(key, TEXT_PARAM)
    assert isinstance(text, str) and json.loads(text) == MEMBERS


def test_stored_json_text_passed_to_an_array_parameter_arrives_as_a_list() -> None:
    memory = VariableMemory(threshold=10)
    key = memory.put(json.dumps(MEMBERS), "members")
    assert memory.resolve(key, LIST_PARAM) == MEMBERS
    assert memory.resolve(key, {"anyOf": [LIST_PARAM, {"type": "null"}]}) == MEMBERS


def test_a_key_inside_a_longer_string_is_replaced_by_the_value_text() -> None:
    memory = VariableMemory(threshold=10)
    members = memory.put(MEMBERS, "members")
    policy = memory.put("Leave is 25 days a year. " * 5, "policy")
    text = memory.resolve(f"Team: {members}. Policy: {policy}", TEXT_PARAM)
    assert text == f"Team: {json.dumps(MEMBERS)}. Policy: {'Leave is 25 days a year. ' * 5}"


def test_keys_nested_in_objects_and_lists_are_resolved_with_their_schemas() -> None:
    memory = VariableMemory(threshold=10)
    key = memory.put(MEMBERS, "members")
    schema = {"properties": {"data": {"type": "object", "properties": {"who": TEXT_PARAM, "all": LIST_PARAM}}}}
    resolved = memory.resolve_args({"data": {"who": key, "all": key, "n": 3}}, schema)
    assert resolved == {"data": {"who": json.dumps(MEMBERS), "all": MEMBERS, "n": 3}}
    assert memory.resolve([key, "plain"]) == [MEMBERS, "plain"]


def test_unknown_keys_are_found_anywhere_in_the_arguments() -> None:
    memory = VariableMemory(threshold=10)
    memory.put(MEMBERS, "members")
    args = {"a": "memory_members", "b": ["memory_team"], "c": {"d": "see memory_policy and memory_members"}, "e": 3}
    assert memory.unknown_keys(args) == ["memory_team", "memory_policy"]


def test_encode_writes_stored_values_as_their_keys_like_a_model_would() -> None:
    memory = VariableMemory(threshold=10)
    key = memory.put(MEMBERS, "members")
    assert memory.encode({"members": MEMBERS, "team": "red"}) == {"members": key, "team": "red"}
    assert memory.encode({"data": {"people": MEMBERS}}) == {"data": {"people": key}}
    assert memory.encode({"short": ["a"]}) == {"short": ["a"]}


def test_recorded_calls_are_written_with_the_keys_stored_before_them() -> None:
    calls = [
        {"name": "list_team", "arguments": {"team": "red"}, "result": {"members": MEMBERS}},
        {"name": "email", "arguments": {"to": MEMBERS, "subject": "hi"}, "result": "sent"},
    ]
    written = calls_as_written(calls, threshold=100)
    assert written == [
        {"name": "list_team", "arguments": {"team": "red"}},
        {"name": "email", "arguments": {"to": "memory_members", "subject": "hi"}},
    ]
    assert calls_as_written(calls, threshold=10_000)[1]["arguments"]["to"] == MEMBERS  # nothing stored


# ---- whole results by reference (append-only conversations) -----------------------------------------------
EMPLOYEE = {"employee_id": "E-1", "name": "Ada Lovelace"}
REVIEWS = [{"year": 2023, "rating": 4}, {"year": 2024, "rating": 5}]


def test_every_result_is_stored_whole_under_its_tools_name_and_repeats_get_a_number() -> None:
    memory = VariableMemory(threshold=100)
    first = memory.observe(EMPLOYEE, hint="get_employee")
    assert (first.key, first.shown, first.new_keys) == ("memory_get_employee", EMPLOYEE, {})  # short: shown as it is
    again = memory.observe({"employee_id": "E-2", "name": "Alan Turing"}, hint="get_employee")
    assert again.key == "memory_get_employee_2"
    same = memory.observe(EMPLOYEE, hint="get_employee")  # the same value again: a step's result has its own key
    assert same.key == "memory_get_employee_3" and memory.values[same.key] == EMPLOYEE


def test_a_result_with_a_long_value_shows_that_values_key_and_preview_once() -> None:
    memory = VariableMemory(threshold=100, preview_chars=30)
    seen = memory.observe({"team": "red", "members": MEMBERS}, hint="list_team")
    assert seen.key == "memory_list_team" and memory.values["memory_list_team"] == {"team": "red", "members": MEMBERS}
    assert seen.shown == {"team": "red", "members": "memory_members"}
    assert list(seen.new_keys) == ["memory_members"] and seen.new_keys["memory_members"].startswith('["Member 00"')
    long_text = memory.observe("policy text " * 30, hint="get_policy")  # not an object: only its key and preview
    assert long_text.shown == "memory_get_policy" and list(long_text.new_keys) == ["memory_get_policy"]


def test_whole_result_keys_resolve_at_any_depth_object_list_and_nested() -> None:
    memory = VariableMemory(threshold=100)
    employee = memory.observe(EMPLOYEE, hint="get_employee").key
    reviews = memory.observe(REVIEWS, hint="list_reviews").key
    # an object whose values are keys (summarize's data)
    assert memory.resolve({"employee": employee, "reviews": reviews}) == {"employee": EMPLOYEE, "reviews": REVIEWS}
    # a list of keys, and plain values beside them
    assert memory.resolve([employee, reviews, "plain", 3]) == [EMPLOYEE, REVIEWS, "plain", 3]
    # nested: an object in a list in an object, checked against the tool's schema on the way down
    schema = {"properties": {"data": {"type": "object", "properties": {"rows": {"type": "array", "items": {
        "type": "object", "properties": {"who": {"type": "object"}, "as_text": TEXT_PARAM}}}}}}}
    args = {"data": {"rows": [{"who": employee, "as_text": reviews}], "n": 1}}
    assert memory.resolve_args(args, schema) == {
        "data": {"rows": [{"who": EMPLOYEE, "as_text": json.dumps(REVIEWS)}], "n": 1}}
    assert memory.unknown_keys({"data": {"rows": [{"who": "memory_get_employe"}]}}) == ["memory_get_employe"]


def test_encode_passes_earlier_results_by_reference_but_writes_ids_and_numbers_as_they_are() -> None:
    memory = VariableMemory(threshold=100)
    memory.observe(EMPLOYEE, hint="get_employee")
    memory.observe(REVIEWS, hint="list_reviews")
    memory.observe("E-1", hint="find_id")  # a bare id result: a model writes the id, not a key
    data = {"employee": EMPLOYEE, "reviews": REVIEWS, "id": "E-1", "rating": 5}
    assert memory.encode({"data": data}) == {
        "data": {"employee": "memory_get_employee", "reviews": "memory_list_reviews", "id": "E-1", "rating": 5}}
    assert memory.resolve(memory.encode({"data": data})) == {"data": data}


def test_arguments_equal_to_an_earlier_result_stay_an_object_of_arguments() -> None:
    """A call's arguments are an object whatever its values match: only the values are written as keys."""
    calls = [
        {"name": "get_employee", "arguments": {"employee_id": "E-1"}, "result": {"employee_id": "E-1"}},
        {"name": "get_salary", "arguments": {"employee_id": "E-1"}, "result": {"salary": 1}},
        {"name": "report", "arguments": {"data": EMPLOYEE}, "result": EMPLOYEE},
        {"name": "archive", "arguments": EMPLOYEE, "result": "ok"},
    ]
    written = calls_as_written(calls, threshold=100)
    assert [w["arguments"] for w in written] == [
        {"employee_id": "E-1"}, {"employee_id": "E-1"}, {"data": EMPLOYEE}, {"employee_id": "E-1", "name": "Ada Lovelace"}]
    memory = VariableMemory(threshold=100)
    memory.observe({"employee_id": "E-1"}, hint="get_employee")
    assert memory.encode_args({"employee_id": "E-1"}) == {"employee_id": "E-1"}
    assert memory.encode_args({"data": {"employee_id": "E-1"}}) == {"data": "memory_get_employee"}


def test_keys_never_cross_runs() -> None:
    first, second = VariableMemory(threshold=10), VariableMemory(threshold=10)
    key = first.put(MEMBERS, "members")
    assert second.unknown_keys({"members": key}) == [key]
    assert second.resolve(key) == key  # another run's key is just text there


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6),
    max_leaves=40,
)


@settings(max_examples=150, deadline=None)
@given(result=st.dictionaries(st.text(min_size=1, max_size=10), JSON, max_size=6))
def test_what_the_model_sees_resolves_back_to_the_tool_output(result: dict[str, Any]) -> None:
    memory = VariableMemory(threshold=40)
    shown = memory.compress(result, hint="tool")
    assert memory.resolve(shown) == result
    assert memory.resolve(memory.encode(result)) == result


# ---- the nested layout: a deep result keeps its shape ------------------------------------------------
HOTELS = {"status": True, "data": {"hotels": [
    {"hotel_id": 1000 + i, "name": f"Hotel {i}", "description": "A quiet place near the river. " * 20,
     "property": {"checkinDate": "2024-11-05", "latitude": 48.2 + i, "photoUrls": [f"https://img/{i}/{k}.jpg" for k in range(12)]}}
    for i in range(8)]}}


def test_the_nested_layout_keeps_ids_deep_inside_a_result_visible() -> None:
    memory = VariableMemory(threshold=256, nested=True)
    seen = memory.observe(HOTELS, hint="search_hotels")
    text = json.dumps(seen.shown)
    first = seen.shown["data"]["hotels"][0]
    assert first["hotel_id"] == 1000 and first["property"]["checkinDate"] == "2024-11-05"  # the first item, deep
    assert all(f'"hotel_id": {1000 + i}' in text for i in range(4))  # later items by their short fields
    assert memory.values[first["description"]].startswith("A quiet place")  # long strings behind keys
    marker = seen.shown["data"]["hotels"][-1]
    assert isinstance(marker, str) and "memory_hotels has all 8" in marker
    assert memory.resolve("memory_hotels") == HOTELS["data"]["hotels"]  # the whole list by its key
    assert len(text) <= 256 * NESTED_BUDGET
    assert set(seen.new_keys) == {k for k in memory.values if k in text}  # only the keys the model is shown


def test_the_nested_layout_leaves_short_results_and_the_fields_layout_alone() -> None:
    assert VariableMemory(threshold=256, nested=True).observe({"id": 7}, hint="t").shown == {"id": 7}
    fields = VariableMemory(threshold=256).observe(HOTELS, hint="search_hotels").shown
    assert fields == {"status": True, "data": "memory_data"}  # the default: a long field behind its key
