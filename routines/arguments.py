"""Checking the arguments of a model's call before the tool is called (design section 3).

Memory keys must name stored values, ``{{...}}`` templates are the Routine's business and never the model's,
the tool must have every parameter given, and the resolved arguments must fit the tool's JSON schema. Every
refusal is a :class:`ModelCallError` whose message is fed back to the model for another try.
"""

from __future__ import annotations

import logging
from typing import Any

import jsonschema

from routines.backends.base import ToolSpec
from routines.bindings import iter_refs
from routines.calls import ToolCall
from routines.errors import ModelCallError
from routines.run_config import VariableStore

log = logging.getLogger(__name__)


class ArgumentChecker:
    """Checks calls against tool schemas; keeps one validator per tool."""

    def __init__(self) -> None:
        self._validators: dict[str, tuple[dict[str, Any], Any]] = {}

    def check(self, call: ToolCall, spec: ToolSpec, memory: VariableStore) -> dict[str, Any]:
        """The arguments the tool gets (memory keys resolved), or a ModelCallError saying what is wrong."""
        unknown = memory.unknown_keys(call.arguments)
        if unknown:
            known = ", ".join(memory.values) or "none yet"
            raise ModelCallError("unknown_key", f"unknown memory key(s) {', '.join(unknown)} (stored keys: {known})")
        if any(True for _ in iter_refs(call.arguments)):
            raise ModelCallError("bad_arguments", "arguments contain {{...}} templates; give the actual values")
        resolved = memory.resolve_args(call.arguments, spec.parameters)
        props = spec.parameters.get("properties", {}) or {}
        extra = [k for k in resolved if props and k not in props]
        if extra:
            raise ModelCallError("bad_arguments", f"{call.name} has no parameter(s) {', '.join(extra)}; it takes {', '.join(props)}")
        validator = self._validator(spec)
        error = jsonschema.exceptions.best_match(validator.iter_errors(resolved)) if validator else None
        if error is not None:
            where = ".".join(map(str, error.absolute_path)) or "arguments"
            raise ModelCallError("bad_arguments", f"{where}: {error.message}")
        return resolved

    def _validator(self, spec: ToolSpec) -> Any:
        """A schema validator per tool, built (and the schema checked) once, not at every call: checking a
        schema against its meta-schema costs milliseconds. None when the tool's schema is invalid."""
        cached = self._validators.get(spec.name)
        if cached is not None and cached[0] is spec.parameters:
            return cached[1]
        schema = spec.parameters or {"type": "object"}
        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
            validator = cls(schema)
        except jsonschema.SchemaError:
            log.warning("tool %s has an invalid input schema; its arguments are not checked", spec.name)
            validator = None
        self._validators[spec.name] = (spec.parameters, validator)
        return validator
