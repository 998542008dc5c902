"""labelSelector and fieldSelector parsing and matching, with the apiserver's semantics."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from kpo_async.testing.sim.errors import bad_request

LabelMatcher = Callable[[Mapping[str, str]], bool]
#: takes the object's field values as a tuple ordered like the resource's field keys
FieldMatcher = Callable[[tuple[str, ...]], bool]

_TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|[^\s!=(),<>]+|<|>)")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise bad_request(f"unable to parse requirement: unexpected character at {pos} in {text!r}")
        tok = m.group(1)
        pos = m.end()
        out.append(tok)
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def parse_label_selector(text: str | None) -> LabelMatcher | None:
    """None when there is nothing to filter."""
    if not text or not text.strip():
        return None
    toks = _tokens(text)
    reqs: list[LabelMatcher] = []
    i = 0

    def err(msg: str) -> Exception:
        return bad_request(f"unable to parse requirement: {msg}")

    while i < len(toks):
        tok = toks[i]
        if tok == "!":
            if i + 1 >= len(toks):
                raise err("found '', expected: identifier")
            key = toks[i + 1]
            reqs.append(lambda labels, k=key: k not in labels)
            i += 2
        else:
            key = tok
            if key in {",", "(", ")", "=", "==", "!="}:
                raise err(f"found '{key}', expected: !, identifier, or 'end of string'")
            i += 1
            op = toks[i] if i < len(toks) else ","
            if op == ",":
                reqs.append(lambda labels, k=key: k in labels)
            elif op in ("=", "==", "!="):
                if i + 1 >= len(toks) or toks[i + 1] == ",":
                    value = ""
                    i += 1
                else:
                    value = toks[i + 1]
                    i += 2
                if op == "!=":
                    reqs.append(lambda labels, k=key, v=value: labels.get(k) != v)
                else:
                    reqs.append(lambda labels, k=key, v=value: labels.get(k) == v)
            elif op in ("in", "notin"):
                if i + 1 >= len(toks) or toks[i + 1] != "(":
                    raise err("found '', expected: '('")
                i += 2
                values: set[str] = set()
                while i < len(toks) and toks[i] != ")":
                    if toks[i] != ",":
                        values.add(toks[i])
                    i += 1
                if i >= len(toks):
                    raise err("found '', expected: ')'")
                i += 1
                if op == "in":
                    reqs.append(lambda labels, k=key, vs=frozenset(values): labels.get(k) in vs)
                else:
                    reqs.append(lambda labels, k=key, vs=frozenset(values): labels.get(k) not in vs)
            elif op in ("<", ">"):
                if i + 1 >= len(toks):
                    raise err("found '', expected: integer")
                try:
                    bound = int(toks[i + 1])
                except ValueError as e:
                    raise err(f"for 'Gt', 'Lt' operators, the value must be an integer: {toks[i + 1]}") from e
                i += 2

                def cmp(
                    labels: Mapping[str, str], k: str = key, b: int = bound, gt: bool = op == ">"
                ) -> bool:
                    try:
                        v = int(labels[k])
                    except (KeyError, ValueError):
                        return False
                    return v > b if gt else v < b

                reqs.append(cmp)
            else:
                raise err(f"found '{op}', expected: in, notin, =, ==, !=, gt, lt")
        if i < len(toks):
            if toks[i] != ",":
                raise err(f"found '{toks[i]}', expected: ',' or 'end of string'")
            i += 1
    if not reqs:
        return None
    return lambda labels: all(r(labels) for r in reqs)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if c == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def parse_field_selector(text: str | None, supported: Mapping[str, int]) -> FieldMatcher | None:
    """`supported` maps each selectable field to its index in the value tuple."""
    if not text or not text.strip():
        return None
    reqs: list[tuple[int, str, bool]] = []
    for part in _split_unescaped(text, ","):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^(.*?)(!=|==|=)(.*)$", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        key, op, value = m.group(1).strip(), m.group(2), _unescape(m.group(3).strip())
        if key not in supported:
            raise bad_request(f"field label not supported: {key}")
        reqs.append((supported[key], value, op == "!="))
    if not reqs:
        return None

    def match(fields: tuple[str, ...]) -> bool:
        for idx, value, negate in reqs:
            if (fields[idx] == value) == negate:
                return False
        return True

    return match
