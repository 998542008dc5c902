"""Word expansion: quotes, parameters, `$(( ))`, `$( )`, field splitting and pathname globbing."""

from __future__ import annotations

import fnmatch
import posixpath
import re
from typing import TYPE_CHECKING

from kpo_async.testing.sim.shell.arith import ArithError, evaluate
from kpo_async.testing.sim.shell.parser import match_backtick, match_brace, match_dquote, match_paren

if TYPE_CHECKING:
    from kpo_async.testing.sim.shell.interp import Shell

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# segment kinds: "lit" unquoted literal (globbable), "q" quoted, "exp" unquoted expansion (split)
Segment = tuple[str, str]


class ExpansionError(Exception):
    """Fatal expansion error: printed as `sh: MSG`, the shell exits with status 2 (1 for :?)."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


async def segments(sh: Shell, raw: str, in_dq: bool = False) -> list[Segment]:
    out: list[Segment] = []
    i, n = 0, len(raw)

    def add(text: str, kind: str) -> None:
        if out and out[-1][1] == kind and kind != "exp":
            out[-1] = (out[-1][0] + text, kind)
        else:
            out.append((text, kind))

    while i < n:
        c = raw[i]
        if c == "'" and not in_dq:
            j = raw.index("'", i + 1)
            add(raw[i + 1 : j], "q")
            i = j + 1
        elif c == '"' and not in_dq:
            j = match_dquote(raw, i)
            add("", "q")
            for text, _ in await segments(sh, raw[i + 1 : j], in_dq=True):
                add(text, "q")
            i = j + 1
        elif c == "\\":
            nxt = raw[i + 1 : i + 2]
            if in_dq:
                if nxt in ("$", "`", '"', "\\"):
                    add(nxt, "q")
                    i += 2
                elif nxt == "\n":
                    i += 2
                else:
                    add("\\", "q")
                    i += 1
            else:
                if nxt != "\n":
                    add(nxt if nxt else "\\", "q")
                i += 2
        elif c == "$":
            text, i = await dollar(sh, raw, i)
            if text is None:
                add("$", "q" if in_dq else "lit")
            else:
                add(text, "q" if in_dq else "exp")
        elif c == "`":
            j = match_backtick(raw, i)
            inner = re.sub(r"\\([$`\\])", r"\1", raw[i + 1 : j])
            add(await sh.command_subst(inner), "q" if in_dq else "exp")
            i = j + 1
        else:
            add(c, "q" if in_dq else "lit")
            i += 1
    return out


async def dollar(sh: Shell, raw: str, i: int) -> tuple[str | None, int]:
    """Expand the `$...` at raw[i]; (None, i+1) for a literal dollar sign."""
    nxt = raw[i + 1 : i + 2]
    if raw.startswith("$((", i):
        j = match_paren(raw, i + 1)
        inner = raw[i + 3 : j - 1] if raw[j - 1] == ")" else None
        if inner is not None and _balanced(inner):
            return await arith(sh, inner), j + 1
        return await sh.command_subst(raw[i + 2 : j]), j + 1
    if nxt == "(":
        j = match_paren(raw, i + 1)
        return await sh.command_subst(raw[i + 2 : j]), j + 1
    if nxt == "{":
        j = match_brace(raw, i + 1)
        return await param(sh, raw[i + 2 : j]), j + 1
    m = _NAME.match(raw, i + 1)
    if m:
        return sh.get_var(m.group(0)) or "", m.end()
    if nxt and (nxt.isdigit() or nxt in "?$#!@*-"):
        return sh.special(nxt), i + 2
    return None, i + 1


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            return False
    return depth == 0


async def arith(sh: Shell, inner: str) -> str:
    text = await expand_str(sh, inner, dq=True)
    try:
        return str(evaluate(text, sh.get_var, sh.set_var))
    except ArithError as e:
        raise ExpansionError(str(e)) from e


async def param(sh: Shell, body: str) -> str:
    if body.startswith("#") and len(body) > 1:
        name = body[1:]
        return str(len(_lookup(sh, name) or ""))
    m = _NAME.match(body) or re.match(r"\d+|[?$#!@*-]", body)
    if not m:
        raise ExpansionError("syntax error: bad substitution")
    name, rest = m.group(0), body[m.end() :]
    value = _lookup(sh, name)
    if not rest:
        return value or ""
    for op in (":-", ":=", ":+", ":?", "-", "=", "+", "?", "##", "#", "%%", "%"):
        if rest.startswith(op):
            word = rest[len(op) :]
            break
    else:
        raise ExpansionError("syntax error: bad substitution")
    unset_or_empty = not value if op.startswith(":") else value is None
    if op in (":-", "-"):
        return await expand_str(sh, word) if unset_or_empty else value or ""
    if op in (":=", "="):
        if unset_or_empty:
            value = await expand_str(sh, word)
            sh.set_var(name, value)
        return value or ""
    if op in (":+", "+"):
        return "" if unset_or_empty else await expand_str(sh, word)
    if op in (":?", "?"):
        if unset_or_empty:
            msg = await expand_str(sh, word) if word else "parameter not set"
            raise ExpansionError(f"{name}: {msg}", status=1)
        return value or ""
    pattern = await expand_str(sh, word)
    value = value or ""
    rx = re.compile(fnmatch.translate(pattern))
    if op in ("#", "##"):
        rng = range(len(value) + 1) if op == "#" else range(len(value), -1, -1)
        for k in rng:
            if rx.match(value[:k]):
                return value[k:]
        return value
    rng = range(len(value), -1, -1) if op == "%" else range(len(value) + 1)
    for k in rng:
        if rx.match(value[k:]):
            return value[:k]
    return value


def _lookup(sh: Shell, name: str) -> str | None:
    if _NAME.fullmatch(name):
        return sh.get_var(name)
    return sh.special(name) if name else None


async def expand_str(sh: Shell, raw: str, dq: bool = False) -> str:
    """Expand to a single string: no field splitting, no globbing (assignments, redirections)."""
    return "".join(text for text, _ in await segments(sh, raw, in_dq=dq))


def split_fields(segs: list[Segment]) -> list[tuple[str, str | None]]:
    """Field-split; each field with a glob pattern (None when it has no unquoted glob char)."""
    fields: list[tuple[str, str | None]] = []
    cur: list[str] = []
    pat: list[str] = []
    globbing = False
    has = False

    def flush() -> None:
        nonlocal cur, pat, has, globbing
        if has:
            fields.append(("".join(cur), "".join(pat) if globbing else None))
        cur, pat, has, globbing = [], [], False, False

    for text, kind in segs:
        if kind == "exp":
            parts = re.split(r"[ \t\n]+", text)
            for k, part in enumerate(parts):
                if k > 0:
                    flush()
                if part:
                    cur.append(part)
                    pat.append(_escape_glob(part))
                    has = True
        elif kind == "lit":
            cur.append(text)
            pat.append(text)
            has = True
            if any(ch in text for ch in "*?["):
                globbing = True
        else:
            cur.append(text)
            pat.append(_escape_glob(text))
            has = True
    flush()
    return fields


def _escape_glob(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def glob(sh: Shell, pattern: str) -> list[str]:
    absolute = pattern.startswith("/")
    full = posixpath.normpath(posixpath.join(sh.cwd, pattern))
    dirpart, base = posixpath.split(full)
    if any(ch in dirpart for ch in "*?["):
        return []  # only the last path component is globbed
    try:
        names = sh.host.fs.listdir(dirpart)
    except Exception:
        return []
    matches = [
        n for n in names if fnmatch.fnmatchcase(n, base) and (not n.startswith(".") or base.startswith("."))
    ]
    if not matches:
        return []
    if absolute:
        return [posixpath.join(dirpart, n) for n in sorted(matches)]
    rel_dir = posixpath.dirname(pattern)
    return [posixpath.join(rel_dir, n) if rel_dir else n for n in sorted(matches)]


async def expand_words(sh: Shell, words: list[str]) -> list[str]:
    out: list[str] = []
    for raw in words:
        for text, pattern in split_fields(await segments(sh, raw)):
            if pattern is not None:
                matched = glob(sh, pattern)
                if matched:
                    out.extend(matched)
                    continue
            out.append(text)
    return out
