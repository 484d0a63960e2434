"""A small, safe evaluator for the expressions Argo evaluates: ``when`` (govaluate), retry (expr), ``depends``.

No ``eval``: a tokenizer and a precedence-climbing parser over a fixed grammar.

- ``when`` (govaluate, after ``{{...}}`` substitution): bare words are strings, exactly as Argo turns
  govaluate variables into strings (``Succeeded == Succeeded`` is true).
- ``retryStrategy.expression`` (antonmedv/expr): identifiers come from an environment such as
  ``{"lastRetry": {"exitCode": "1", "status": "Failed", ...}}``; an unknown identifier is an error.
- ``depends``: task names joined by ``&&``/``||``/``!`` and parentheses, with ``.Succeeded`` etc.

Supported: string/number/bool/nil literals, ``[a, b]`` and ``(a, b)`` lists, ``==  !=  <  <=  >  >=``,
``in``/``not in``, ``matches``/``=~``, ``contains``, ``startsWith``, ``endsWith``, ``&& and || or ! not``,
``+ - * / %``, unary minus, and the functions ``asInt asFloat int float string len lower upper``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["govaluate", "expr"]


class ExprError(Exception):
    """An expression that cannot be parsed or evaluated (one line, names the expression)."""


@dataclass(frozen=True)
class _Tok:
    kind: str  # str num ident op end
    value: Any
    pos: int


_TOKEN_RE = re.compile(
    r"""\s*(?:
    (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<num>\d+\.\d+|\d+)
  | (?P<op>&&|\|\||==|!=|<=|>=|=~|[<>!+\-*/%()\[\],])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    )""",
    re.VERBOSE,
)
_WORD_OPS = {"and": "&&", "or": "||", "not": "!", "in": "in", "matches": "=~", "contains": "contains"}
_WORD_OPS |= {"startsWith": "startsWith", "endsWith": "endsWith"}
_LITERALS: dict[str, Any] = {"true": True, "false": False, "nil": None, "null": None}


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise ExprError(f"unexpected character {text[pos:].strip()[:1]!r} at position {pos}")
        pos = m.end()
        if m.group("str") is not None:
            tokens.append(_Tok("str", _unquote(m.group("str")), m.start("str")))
        elif m.group("num") is not None:
            raw = m.group("num")
            tokens.append(_Tok("num", float(raw) if "." in raw else int(raw), m.start("num")))
        elif m.group("op") is not None:
            tokens.append(_Tok("op", m.group("op"), m.start("op")))
        else:
            word = m.group("ident")
            if word in _WORD_OPS:
                tokens.append(_Tok("op", _WORD_OPS[word], m.start("ident")))
            else:
                tokens.append(_Tok("ident", word, m.start("ident")))
    tokens.append(_Tok("end", None, len(text)))
    # "not in" is one operator
    merged: list[_Tok] = []
    for tok in tokens:
        if tok.kind == "op" and tok.value == "in" and merged and merged[-1].kind == "op" and merged[-1].value == "!":
            merged[-1] = _Tok("op", "not in", merged[-1].pos)
            continue
        merged.append(tok)
    return merged


# precedence: higher binds tighter
_BINARY = {
    "||": 1,
    "&&": 2,
    "==": 3,
    "!=": 3,
    "<": 4,
    "<=": 4,
    ">": 4,
    ">=": 4,
    "in": 4,
    "not in": 4,
    "=~": 4,
    "contains": 4,
    "startsWith": 4,
    "endsWith": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "/": 6,
    "%": 6,
}


def _to_int(v: Any) -> int:
    try:
        return int(str(v).strip()) if not isinstance(v, float) else int(v)
    except ValueError as exc:
        raise ExprError(f"cannot convert {v!r} to an integer") from exc


def _to_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError) as exc:
        raise ExprError(f"cannot convert {v!r} to a number") from exc


def _to_string(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else str(v)


def _length(v: Any) -> int:
    if not isinstance(v, str | list | dict):
        raise ExprError(f"len() of {type(v).__name__}")
    return len(v)


_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "asInt": _to_int,
    "int": _to_int,
    "asFloat": _to_float,
    "float": _to_float,
    "string": _to_string,
    "len": _length,
    "lower": lambda v: _to_string(v).lower(),
    "upper": lambda v: _to_string(v).upper(),
}


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _truthy(v: Any, op: str) -> bool:
    if not isinstance(v, bool):
        raise ExprError(f"operator {op!r} needs booleans, got {v!r}")
    return v


def _equal(a: Any, b: Any) -> bool:
    if _is_num(a) and _is_num(b):
        return bool(a == b)
    if type(a) is not type(b) and not (a is None or b is None):
        return False
    return bool(a == b)


def _compare(op: str, a: Any, b: Any) -> bool:
    if not ((_is_num(a) and _is_num(b)) or (isinstance(a, str) and isinstance(b, str))):
        raise ExprError(f"cannot compare {a!r} {op} {b!r} (different types)")
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def _arith(op: str, a: Any, b: Any) -> Any:
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    if not (_is_num(a) and _is_num(b)):
        raise ExprError(f"cannot compute {a!r} {op} {b!r}")
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise ExprError("division by zero")
    return a / b if op == "/" else a % b


def _member(a: Any, b: Any) -> bool:
    if isinstance(b, list):
        return any(_equal(a, item) for item in b)
    if isinstance(b, dict):
        return a in b
    if isinstance(b, str) and isinstance(a, str):
        return a in b
    raise ExprError(f"'in' needs a list on the right, got {b!r}")


def _apply(op: str, a: Any, b: Any) -> Any:
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if op in ("<", "<=", ">", ">="):
        return _compare(op, a, b)
    if op == "in":
        return _member(a, b)
    if op == "not in":
        return not _member(a, b)
    if op in ("=~", "contains", "startsWith", "endsWith"):
        if not (isinstance(a, str) and isinstance(b, str)):
            raise ExprError(f"operator {op!r} needs strings, got {a!r} and {b!r}")
        if op == "=~":
            try:
                return re.search(b, a) is not None
            except re.error as exc:
                raise ExprError(f"bad regular expression {b!r}: {exc}") from exc
        if op == "contains":
            return b in a
        return a.startswith(b) if op == "startsWith" else a.endswith(b)
    return _arith(op, a, b)


class _Parser:
    def __init__(self, text: str, mode: Mode, env: Mapping[str, Any]) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.mode = mode
        self.env = env

    def peek(self) -> _Tok:
        return self.tokens[self.i]

    def take(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        tok = self.take()
        if tok.kind != "op" or tok.value != value:
            raise ExprError(f"expected {value!r} at position {tok.pos}, found {tok.value!r}")

    def parse(self) -> Any:
        value = self.binary(1)
        tok = self.peek()
        if tok.kind != "end":
            raise ExprError(f"unexpected {tok.value!r} at position {tok.pos}")
        return value

    def binary(self, min_prec: int) -> Any:
        left = self.unary()
        while True:
            tok = self.peek()
            prec = _BINARY.get(tok.value) if tok.kind == "op" else None
            if prec is None or prec < min_prec:
                return left
            self.take()
            op = str(tok.value)
            if op in ("&&", "||"):
                # both sides are parsed (the grammar needs it); evaluation short-circuits on the value
                right = self.binary(prec + 1)
                lv = _truthy(left, op)
                left = (lv and _truthy(right, op)) if op == "&&" else (lv or _truthy(right, op))
                continue
            right = self.binary(prec + 1)
            left = _apply(op, left, right)

    def unary(self) -> Any:
        tok = self.peek()
        if tok.kind == "op" and tok.value == "!":
            self.take()
            return not _truthy(self.unary(), "!")
        if tok.kind == "op" and tok.value == "-":
            self.take()
            v = self.unary()
            if not _is_num(v):
                raise ExprError(f"cannot negate {v!r}")
            return -v
        return self.primary()

    def sequence(self, close: str) -> list[Any]:
        items: list[Any] = []
        if self.peek().kind == "op" and self.peek().value == close:
            self.take()
            return items
        while True:
            items.append(self.binary(1))
            tok = self.take()
            if tok.kind == "op" and tok.value == close:
                return items
            if not (tok.kind == "op" and tok.value == ","):
                raise ExprError(f"expected ',' or {close!r} at position {tok.pos}")

    def primary(self) -> Any:
        tok = self.take()
        if tok.kind in ("str", "num"):
            return tok.value
        if tok.kind == "op" and tok.value == "[":
            return self.sequence("]")
        if tok.kind == "op" and tok.value == "(":
            items = self.sequence(")")
            if len(items) == 1:
                return items[0]
            return items  # govaluate's (a, b) list
        if tok.kind == "ident":
            name = str(tok.value)
            if self.peek().kind == "op" and self.peek().value == "(":
                self.take()
                args = self.sequence(")")
                fn = _FUNCTIONS.get(name)
                if fn is None:
                    raise ExprError(f"unknown function {name}()")
                if len(args) != 1:
                    raise ExprError(f"{name}() takes one argument, got {len(args)}")
                return fn(args[0])
            if name in _LITERALS:
                return _LITERALS[name]
            return self.identifier(name)
        raise ExprError(f"unexpected {tok.value!r} at position {tok.pos}")

    def identifier(self, name: str) -> Any:
        if self.mode == "govaluate":
            return name  # Argo turns govaluate variables into strings
        value: Any = self.env
        for part in name.split("."):
            if not isinstance(value, Mapping) or part not in value:
                raise ExprError(f"unknown variable {name}")
            value = value[part]
        return value


def evaluate(text: str, *, mode: Mode, env: Mapping[str, Any] | None = None) -> Any:
    """Evaluate ``text``; :class:`ExprError` names the problem."""
    try:
        return _Parser(text, mode, env or {}).parse()
    except ExprError as exc:
        raise ExprError(f"cannot evaluate {text!r}: {exc}") from None


def evaluate_bool(text: str, *, mode: Mode, env: Mapping[str, Any] | None = None) -> bool:
    """Evaluate ``text`` and require a boolean result (as Argo does for ``when`` and retry expressions)."""
    value = evaluate(text, mode=mode, env=env)
    if not isinstance(value, bool):
        raise ExprError(f"expression {text!r} evaluated to {value!r}, not a boolean")
    return value


# ---- depends ------------------------------------------------------------------------------------

DEPENDS_RESULTS = ("Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned", "AnySucceeded", "AllFailed")
_DEP_TOKEN = re.compile(r"\s*(?:(?P<op>&&|\|\||!|\(|\))|(?P<name>[A-Za-z0-9][-A-Za-z0-9_]*)(?:\.(?P<res>[A-Za-z]+))?)")


def _depends_tokens(text: str) -> list[tuple[str, str, str | None]]:
    tokens: list[tuple[str, str, str | None]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _DEP_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExprError(f"depends {text!r}: unexpected {text[pos:].strip()[:10]!r}")
        pos = m.end()
        if m.group("op"):
            tokens.append(("op", m.group("op"), None))
        else:
            res = m.group("res")
            if res is not None and res not in DEPENDS_RESULTS:
                raise ExprError(f"depends {text!r}: unknown task result .{res} (one of {', '.join(DEPENDS_RESULTS)})")
            tokens.append(("task", m.group("name"), res))
    return tokens


def depends_tasks(text: str) -> list[str]:
    """The task names a ``depends`` expression refers to (in order, unique)."""
    seen: list[str] = []
    for kind, value, _ in _depends_tokens(text):
        if kind == "task" and value not in seen:
            seen.append(value)
    return seen


def evaluate_depends(text: str, result: Callable[[str, str | None], bool]) -> bool:
    """Evaluate ``depends`` with ``result(task, "Succeeded"|...|None)``; ``None`` is the bare-name default."""
    tokens = _depends_tokens(text)
    i = 0

    def expr(min_prec: int) -> bool:
        nonlocal i
        left = atom()
        while i < len(tokens) and tokens[i][0] == "op" and tokens[i][1] in ("&&", "||"):
            op = tokens[i][1]
            prec = 2 if op == "&&" else 1
            if prec < min_prec:
                break
            i += 1
            right = expr(prec + 1)
            left = (left and right) if op == "&&" else (left or right)
        return left

    def atom() -> bool:
        nonlocal i
        if i >= len(tokens):
            raise ExprError(f"depends {text!r}: unexpected end")
        kind, value, res = tokens[i]
        i += 1
        if kind == "task":
            return result(value, res)
        if value == "!":
            return not atom()
        if value == "(":
            inner = expr(1)
            if i >= len(tokens) or tokens[i][1] != ")":
                raise ExprError(f"depends {text!r}: missing ')'")
            i += 1
            return inner
        raise ExprError(f"depends {text!r}: unexpected {value!r}")

    value = expr(1)
    if i != len(tokens):
        raise ExprError(f"depends {text!r}: unexpected {tokens[i][1]!r}")
    return value
