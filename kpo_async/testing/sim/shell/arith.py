"""`$(( ))` arithmetic: C integer semantics, variables, assignment operators."""

from __future__ import annotations

import re
from collections.abc import Callable

_TOKEN = re.compile(
    r"\s*(0[xX][0-9a-fA-F]+|\d+|[A-Za-z_][A-Za-z0-9_]*|\*\*=?|<<=|>>=|\+\+|--|&&|\|\||<=|>=|==|!=|<<|>>"
    r"|[-+*/%&|^]=|[-+*/%()<>!~?:=&|^,])"
)


class ArithError(Exception):
    pass


def _tokenize(expr: str) -> list[str]:
    toks: list[str] = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise ArithError("arithmetic syntax error")
        toks.append(m.group(1))
        pos = m.end()
        while pos < len(expr) and expr[pos].isspace():
            pos += 1
    return toks


def _cdiv(a: int, b: int) -> int:
    if b == 0:
        raise ArithError("divide by zero")
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _cmod(a: int, b: int) -> int:
    if b == 0:
        raise ArithError("divide by zero")
    return a - _cdiv(a, b) * b


_BINARY: dict[str, Callable[[int, int], int]] = {
    "*": lambda a, b: a * b,
    "/": _cdiv,
    "%": _cmod,
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "<<": lambda a, b: a << b,
    ">>": lambda a, b: a >> b,
    "<": lambda a, b: int(a < b),
    "<=": lambda a, b: int(a <= b),
    ">": lambda a, b: int(a > b),
    ">=": lambda a, b: int(a >= b),
    "==": lambda a, b: int(a == b),
    "!=": lambda a, b: int(a != b),
    "&": lambda a, b: a & b,
    "^": lambda a, b: a ^ b,
    "|": lambda a, b: a | b,
    "**": lambda a, b: a**b if b >= 0 else 0,
}
_LEVELS = [
    ["|"],
    ["^"],
    ["&"],
    ["==", "!="],
    ["<", "<=", ">", ">="],
    ["<<", ">>"],
    ["+", "-"],
    ["*", "/", "%"],
]


def _wrap(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


class _Eval:
    def __init__(
        self, toks: list[str], get: Callable[[str], str | None], set_: Callable[[str, str], None]
    ) -> None:
        self.toks = toks
        self.i = 0
        self.get = get
        self.set = set_

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        if self.i >= len(self.toks):
            raise ArithError("arithmetic syntax error")
        t = self.toks[self.i]
        self.i += 1
        return t

    def var(self, name: str) -> int:
        raw = self.get(name)
        if raw is None or raw.strip() == "":
            return 0
        try:
            return _parse_int(raw.strip())
        except ValueError:
            return evaluate(raw, self.get, self.set)

    def expr(self, live: bool = True) -> int:
        v = self.assign(live)
        while self.peek() == ",":
            self.take()
            v = self.assign(live)
        return v

    def assign(self, live: bool) -> int:
        t = self.peek()
        nxt = self.toks[self.i + 1] if self.i + 1 < len(self.toks) else None
        if (
            t is not None
            and _is_name(t)
            and nxt is not None
            and nxt.endswith("=")
            and nxt not in ("==", "!=", "<=", ">=")
        ):
            self.i += 2
            value = self.assign(live)
            if nxt != "=":
                value = _BINARY[nxt[:-1]](self.var(t), value)
            value = _wrap(value)
            if live:
                self.set(t, str(value))
            return value
        return self.ternary(live)

    def ternary(self, live: bool) -> int:
        cond = self.logor(live)
        if self.peek() != "?":
            return cond
        self.take()
        a = self.assign(live and bool(cond))
        if self.take() != ":":
            raise ArithError("arithmetic syntax error")
        b = self.assign(live and not cond)
        return a if cond else b

    def logor(self, live: bool) -> int:
        v = self.logand(live)
        while self.peek() == "||":
            self.take()
            r = self.logand(live and not v)
            v = int(bool(v) or bool(r))
        return v

    def logand(self, live: bool) -> int:
        v = self.binary(0, live)
        while self.peek() == "&&":
            self.take()
            r = self.binary(0, live and bool(v))
            v = int(bool(v) and bool(r))
        return v

    def binary(self, level: int, live: bool) -> int:
        if level == len(_LEVELS):
            return self.power(live)
        v = self.binary(level + 1, live)
        while self.peek() in _LEVELS[level]:
            op = self.take()
            r = self.binary(level + 1, live)
            v = _wrap(_BINARY[op](v, r)) if live else 0
        return v

    def power(self, live: bool) -> int:
        v = self.unary(live)
        if self.peek() == "**":
            self.take()
            r = self.power(live)
            v = _wrap(_BINARY["**"](v, r)) if live else 0
        return v

    def unary(self, live: bool) -> int:
        t = self.peek()
        if t in ("+", "-", "!", "~"):
            self.take()
            v = self.unary(live)
            return {"+": v, "-": -v, "!": int(not v), "~": ~v}[t]  # type: ignore[index]
        if t in ("++", "--"):
            self.take()
            name = self.take()
            if not _is_name(name):
                raise ArithError("arithmetic syntax error")
            v = self.var(name) + (1 if t == "++" else -1)
            if live:
                self.set(name, str(v))
            return v
        return self.postfix(live)

    def postfix(self, live: bool) -> int:
        t = self.take()
        if t == "(":
            v = self.expr(live)
            if self.take() != ")":
                raise ArithError("arithmetic syntax error")
            return v
        if _is_name(t):
            v = self.var(t)
            if self.peek() in ("++", "--"):
                op = self.take()
                if live:
                    self.set(t, str(v + (1 if op == "++" else -1)))
            return v
        try:
            return _parse_int(t)
        except ValueError as e:
            raise ArithError("arithmetic syntax error") from e


def _is_name(t: str) -> bool:
    return bool(t) and (t[0].isalpha() or t[0] == "_")


def _parse_int(text: str) -> int:
    text = text.strip()
    neg = text.startswith("-")
    body = text[1:] if neg or text.startswith("+") else text
    if body.lower().startswith("0x"):
        v = int(body, 16)
    elif len(body) > 1 and body.startswith("0"):
        v = int(body, 8)
    else:
        v = int(body)
    return -v if neg else v


def evaluate(expr: str, get: Callable[[str], str | None], set_: Callable[[str, str], None]) -> int:
    toks = _tokenize(expr)
    if not toks:
        return 0
    ev = _Eval(toks, get, set_)
    v = ev.expr()
    if ev.i != len(toks):
        raise ArithError("arithmetic syntax error")
    return v
