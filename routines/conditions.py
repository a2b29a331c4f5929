"""The small, safe condition language of ``when`` (never ``eval``).

    condition  := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | compare
    compare    := operand (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in") operand)?
    operand    := literal | reference | "[" operand ("," operand)* "]" | "(" condition ")"
    literal    := 'text' | "text" | number | true | false | null   (True/False/None also accepted)
    reference  := {{steps.2.role}} | steps.2.role | inputs.name | system.user_id

An operand alone is read for its truth value. Unknown names and missing paths are errors, not false.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from routines.bindings import ROOTS, Ref, RunState, lookup, parse_ref
from routines.errors import BindingError, ConditionSyntaxError

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<ref>\{\{\s*[A-Za-z_]\w*(?:\.[\w\-]+)*\s*\}\})
    | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
    | (?P<name>[A-Za-z_]\w*(?:\.[\w\-]+)*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in"}
_LITERALS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(expr: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            at = len(expr) - len(expr[pos:].lstrip())
            char = expr[at]
            if char in "'\"":
                raise ConditionSyntaxError(
                    f"unterminated string starting at position {at} in {expr!r}; close it with {char}"
                )
            raise ConditionSyntaxError(f"unexpected character {char!r} at position {at} in {expr!r}")
        kind = m.lastgroup or ""
        text, start = m.group(kind), m.start(kind)
        if kind == "name" and text in _KEYWORDS:
            kind = "kw"
        out.append(_Tok(kind, text, start))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.toks = _tokens(expr)
        self.i = 0

    def peek(self, offset: int = 0) -> _Tok | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise ConditionSyntaxError(f"condition {self.expr!r} ends too early (at position {len(self.expr)})")
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            raise ConditionSyntaxError(f"expected {text!r} at position {tok.pos} in {self.expr!r}, found {tok.text!r}")

    def at(self, text: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.text == text and tok.kind in ("kw", "op")

    def parse(self) -> tuple:
        if not self.toks:
            raise ConditionSyntaxError("empty condition; write e.g. {{steps.1.role}} == 'hr', or leave 'when' out")
        node = self.or_()
        tok = self.peek()
        if tok is not None:
            raise ConditionSyntaxError(f"unexpected {tok.text!r} at position {tok.pos} in {self.expr!r}")
        return node

    def or_(self) -> tuple:
        node = self.and_()
        while self.at("or"):
            self.take()
            node = ("or", node, self.and_())
        return node

    def and_(self) -> tuple:
        node = self.not_()
        while self.at("and"):
            self.take()
            node = ("and", node, self.not_())
        return node

    def not_(self) -> tuple:
        if self.at("not"):
            self.take()
            return ("not", self.not_())
        return self.compare()

    def compare(self) -> tuple:
        left = self.operand()
        tok = self.peek()
        if tok is None:
            return left
        if tok.text in ("==", "!=", "<", "<=", ">", ">=", "in"):
            self.take()
            return ("cmp", tok.text, left, self.operand())
        if tok.text == "not" and (nxt := self.peek(1)) is not None and nxt.text == "in":
            self.take(), self.take()
            return ("cmp", "not in", left, self.operand())
        return left

    def operand(self) -> tuple:
        tok = self.take()
        if tok.kind == "str":
            return ("lit", _unquote(tok.text))
        if tok.kind == "num":
            return ("lit", float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text))
        if tok.kind == "ref":
            return ("ref", _ref(tok.text.strip("{} \t"), tok, self.expr))
        if tok.kind == "name":
            if tok.text in _LITERALS:
                return ("lit", _LITERALS[tok.text])
            return ("ref", _ref(tok.text, tok, self.expr))
        if tok.text == "(":
            node = self.or_()
            self.expect(")")
            return node
        if tok.text == "[":
            items = []
            if not self.at("]"):
                items.append(self.operand())
                while self.at(","):
                    self.take()
                    items.append(self.operand())
            self.expect("]")
            return ("list", items)
        raise ConditionSyntaxError(f"unexpected {tok.text!r} at position {tok.pos} in {self.expr!r}")


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def _ref(dotted: str, tok: _Tok, expr: str) -> Ref:
    root, _, rest = dotted.partition(".")
    if root not in ROOTS:
        raise ConditionSyntaxError(
            f"unknown name {dotted!r} at position {tok.pos} in {expr!r}; references start with "
            f"{', '.join(ROOTS)} (e.g. steps.2.role) and text needs quotes ('hr')"
        )
    try:
        return parse_ref(root, "." + rest if rest else "")
    except BindingError as exc:
        raise ConditionSyntaxError(f"{exc} (at position {tok.pos} in {expr!r})") from None


def parse_condition(expr: str) -> tuple:
    """Parse (without evaluating) - raises :class:`ConditionSyntaxError`. Used by validation."""
    return _Parser(expr).parse()


def condition_refs(node: tuple) -> list[Ref]:
    kind = node[0]
    if kind == "ref":
        return [node[1]]
    if kind == "lit":
        return []
    if kind == "list":
        return [r for item in node[1] for r in condition_refs(item)]
    if kind == "cmp":
        return condition_refs(node[2]) + condition_refs(node[3])
    return [r for child in node[1:] for r in condition_refs(child)]


def _norm(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _eval(node: tuple, state: RunState) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "ref":
        return lookup(node[1], state)
    if kind == "list":
        return [_eval(item, state) for item in node[1]]
    if kind == "not":
        return not _eval(node[1], state)
    if kind == "and":
        return bool(_eval(node[1], state)) and bool(_eval(node[2], state))
    if kind == "or":
        return bool(_eval(node[1], state)) or bool(_eval(node[2], state))
    op, left, right = node[1], _eval(node[2], state), _eval(node[3], state)
    if op in ("in", "not in"):
        if isinstance(right, str):
            found = isinstance(left, str) and left.casefold() in right.casefold()
        elif isinstance(right, (list, tuple, dict)):
            found = _norm(left) in [_norm(x) for x in right]
        else:
            raise BindingError(f"'in' needs a list or text on the right, got {type(right).__name__}")
        return found if op == "in" else not found
    if op == "==":
        return _norm(left) == _norm(right)
    if op == "!=":
        return _norm(left) != _norm(right)
    try:
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
    except TypeError:
        raise BindingError(f"cannot compare {left!r} {op} {right!r}") from None


def evaluate(expr: str, state: RunState) -> bool:
    """Evaluate a condition; string comparisons ignore case. Raises ConditionSyntaxError or BindingError."""
    return bool(_eval(parse_condition(expr), state))
