"""Lexer and parser for the supported subset of POSIX `sh` (see docs/embedded-cluster.md).

Words keep their raw source text (quotes included); expansion happens at run time in expand.py.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field


class ShellSyntaxError(Exception):
    """A real syntax error: sh prints `sh: syntax error: ...` and exits 2."""


class Unsupported(Exception):
    """Valid shell the simulator does not implement: the container fails with exit 127."""


@dataclass
class Tok:
    kind: str  # WORD, OP, NL, IO, EOF
    value: str


OPERATORS = ("&>>", "&&", "||", ";;", ">>", "<<", ">&", "<&", ">|", "&>", ";", "&", "|", "(", ")", "<", ">")
_META = set(" \t\n;&|()<>")
RESERVED = {
    "if",
    "then",
    "elif",
    "else",
    "fi",
    "for",
    "in",
    "do",
    "done",
    "while",
    "until",
    "case",
    "esac",
    "{",
    "}",
    "!",
}


def match_paren(src: str, i: int) -> int:
    """Index of the ')' closing the '(' at src[i], honouring quotes; raises if unterminated."""
    depth = 0
    n = len(src)
    while i < n:
        c = src[i]
        if c == "\\":
            i += 2
            continue
        if c == "'":
            j = src.find("'", i + 1)
            if j < 0:
                raise ShellSyntaxError("unterminated quoted string")
            i = j + 1
            continue
        if c == '"':
            i = match_dquote(src, i) + 1
            continue
        if c == "`":
            i = match_backtick(src, i) + 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ShellSyntaxError('unexpected end of file (expecting ")")')


def match_brace(src: str, i: int) -> int:
    """Index of the '}' closing the '{' at src[i] (for ${...})."""
    depth = 0
    n = len(src)
    while i < n:
        c = src[i]
        if c == "\\":
            i += 2
            continue
        if c == "'":
            j = src.find("'", i + 1)
            if j < 0:
                raise ShellSyntaxError("unterminated quoted string")
            i = j + 1
            continue
        if c == '"':
            i = match_dquote(src, i) + 1
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ShellSyntaxError("missing '}'")


def match_dquote(src: str, i: int) -> int:
    j = i + 1
    n = len(src)
    while j < n:
        c = src[j]
        if c == "\\":
            j += 2
            continue
        if c == '"':
            return j
        if c == "$" and src[j + 1 : j + 2] == "(":
            j = match_paren(src, j + 1) + 1
            continue
        if c == "$" and src[j + 1 : j + 2] == "{":
            j = match_brace(src, j + 1) + 1
            continue
        if c == "`":
            j = match_backtick(src, j) + 1
            continue
        j += 1
    raise ShellSyntaxError("unterminated quoted string")


def match_backtick(src: str, i: int) -> int:
    j = i + 1
    while j < len(src):
        if src[j] == "\\":
            j += 2
            continue
        if src[j] == "`":
            return j
        j += 1
    raise ShellSyntaxError("unterminated quoted string")


def _read_word(src: str, i: int) -> int:
    n = len(src)
    while i < n and src[i] not in _META:
        c = src[i]
        if c == "\\":
            i += 2
        elif c == "'":
            j = src.find("'", i + 1)
            if j < 0:
                raise ShellSyntaxError("unterminated quoted string")
            i = j + 1
        elif c == '"':
            i = match_dquote(src, i) + 1
        elif c == "$" and src[i + 1 : i + 2] == "(":
            i = match_paren(src, i + 1) + 1
        elif c == "$" and src[i + 1 : i + 2] == "{":
            i = match_brace(src, i + 1) + 1
        elif c == "`":
            i = match_backtick(src, i) + 1
        else:
            i += 1
    return min(i, n)


def lex(src: str) -> list[Tok]:
    toks: list[Tok] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c in " \t\r":
            i += 1
            continue
        if c == "\\" and src[i + 1 : i + 2] == "\n":
            i += 2
            continue
        if c == "#":
            while i < n and src[i] != "\n":
                i += 1
            continue
        if c == "\n":
            toks.append(Tok("NL", "\n"))
            i += 1
            continue
        if c in ";&|()<>":
            for op in OPERATORS:
                if src.startswith(op, i):
                    toks.append(Tok("OP", op))
                    i += len(op)
                    break
            continue
        j = _read_word(src, i)
        word = src[i:j]
        if word.isdigit() and j < n and src[j] in "<>":
            toks.append(Tok("IO", word))
        else:
            toks.append(Tok("WORD", word))
        i = j
    toks.append(Tok("EOF", ""))
    return toks


# --- AST ---
@dataclass
class Redir:
    fd: int | None
    op: str
    target: str


@dataclass
class Simple:
    assigns: list[tuple[str, str]]
    words: list[str]
    redirs: list[Redir] = field(default_factory=list)


@dataclass
class Pipeline:
    cmds: list[object]
    negate: bool = False


@dataclass
class AndOr:
    first: object
    rest: list[tuple[str, object]]


@dataclass
class Seq:
    items: list[tuple[object, bool]]  # (node, background)


@dataclass
class If:
    branches: list[tuple[Seq, Seq]]
    else_: Seq | None
    redirs: list[Redir] = field(default_factory=list)


@dataclass
class For:
    var: str
    words: list[str] | None
    body: Seq
    redirs: list[Redir] = field(default_factory=list)


@dataclass
class Loop:
    until: bool
    cond: Seq
    body: Seq
    redirs: list[Redir] = field(default_factory=list)


@dataclass
class Group:
    body: Seq
    subshell: bool
    redirs: list[Redir] = field(default_factory=list)


def _is_name(s: str) -> bool:
    return bool(s) and (s[0].isalpha() or s[0] == "_") and all(ch.isalnum() or ch == "_" for ch in s)


class Parser:
    def __init__(self, src: str) -> None:
        self.toks = lex(src)
        self.pos = 0

    def peek(self) -> Tok:
        return self.toks[self.pos]

    def next(self) -> Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def is_word(self, *values: str) -> bool:
        tok = self.peek()
        return tok.kind == "WORD" and tok.value in values

    def is_op(self, *values: str) -> bool:
        tok = self.peek()
        return tok.kind == "OP" and tok.value in values

    def skip_nl(self) -> None:
        while self.peek().kind == "NL":
            self.pos += 1

    def unexpected(self, expecting: str | None = None) -> ShellSyntaxError:
        tok = self.peek()
        if tok.kind == "EOF":
            suffix = f' (expecting "{expecting}")' if expecting else ""
            return ShellSyntaxError(f"unexpected end of file{suffix}")
        value = "newline" if tok.kind == "NL" else tok.value
        return ShellSyntaxError(f'unexpected "{value}"' if tok.kind != "NL" else "unexpected newline")

    def expect_word(self, value: str) -> None:
        self.skip_nl()
        if not self.is_word(value):
            raise self.unexpected(value)
        self.pos += 1

    def parse(self) -> Seq:
        seq = self.parse_list(set())
        if self.peek().kind != "EOF":
            raise self.unexpected()
        return seq

    def parse_list(self, stop: set[str], close_paren: bool = False) -> Seq:
        items: list[tuple[object, bool]] = []
        while True:
            self.skip_nl()
            tok = self.peek()
            if tok.kind == "EOF" or (tok.kind == "WORD" and tok.value in stop):
                break
            if close_paren and self.is_op(")"):
                break
            if tok.kind == "OP" and tok.value in (";", "&", ";;", ")"):
                raise self.unexpected()
            node = self.parse_and_or()
            bg = False
            if self.is_op(";"):
                self.pos += 1
            elif self.is_op("&"):
                self.pos += 1
                bg = True
            elif self.peek().kind == "NL":
                self.pos += 1
            items.append((node, bg))
        return Seq(items)

    def parse_and_or(self) -> object:
        first = self.parse_pipeline()
        rest: list[tuple[str, object]] = []
        while self.is_op("&&", "||"):
            op = self.next().value
            self.skip_nl()
            rest.append((op, self.parse_pipeline()))
        return AndOr(first, rest) if rest else first

    def parse_pipeline(self) -> object:
        negate = False
        if self.is_word("!"):
            self.pos += 1
            negate = True
        cmds = [self.parse_command()]
        while self.is_op("|"):
            self.pos += 1
            self.skip_nl()
            cmds.append(self.parse_command())
        if len(cmds) == 1 and not negate:
            return cmds[0]
        return Pipeline(cmds, negate)

    def parse_command(self) -> object:
        tok = self.peek()
        node: object
        if tok.kind == "WORD":
            if tok.value == "if":
                node = self.parse_if()
            elif tok.value == "for":
                node = self.parse_for()
            elif tok.value in ("while", "until"):
                node = self.parse_loop()
            elif tok.value == "{":
                self.pos += 1
                body = self.parse_list({"}"})
                self.expect_word("}")
                node = Group(body, False)
            elif tok.value == "case":
                raise Unsupported("case statements")
            elif tok.value == "function":
                raise Unsupported("functions")
            elif tok.value in RESERVED - {"!"}:
                raise self.unexpected()
            elif self.toks[self.pos + 1].kind == "OP" and self.toks[self.pos + 1].value == "(":
                raise Unsupported("functions")
            else:
                return self.parse_simple()
        elif tok.kind == "OP" and tok.value == "(":
            self.pos += 1
            body = self.parse_list(set(), close_paren=True)
            if not self.is_op(")"):
                raise self.unexpected(")")
            self.pos += 1
            node = Group(body, True)
        else:
            return self.parse_simple()
        redirs = node.redirs  # type: ignore[attr-defined]
        while self.peek().kind == "IO" or self.is_op(">", ">>", "<", ">&", "<&", ">|", "&>", "&>>", "<<"):
            redirs.append(self.parse_redir())
        return node

    def parse_redir(self) -> Redir:
        fd: int | None = None
        if self.peek().kind == "IO":
            fd = int(self.next().value)
        op = self.next().value
        if op == "<<":
            raise Unsupported("here-documents")
        if self.peek().kind != "WORD":
            raise self.unexpected()
        return Redir(fd, op, self.next().value)

    def parse_simple(self) -> Simple:
        assigns: list[tuple[str, str]] = []
        words: list[str] = []
        redirs: list[Redir] = []
        while True:
            tok = self.peek()
            if tok.kind == "WORD":
                if not words and "=" in tok.value and _is_name(tok.value.split("=", 1)[0]):
                    name, value = tok.value.split("=", 1)
                    assigns.append((name, value))
                else:
                    words.append(tok.value)
                self.pos += 1
            elif tok.kind == "IO" or (
                tok.kind == "OP" and tok.value in (">", ">>", "<", ">&", "<&", ">|", "&>", "&>>", "<<")
            ):
                redirs.append(self.parse_redir())
            elif tok.kind == "OP" and tok.value == "(" and words:
                raise Unsupported("functions")
            else:
                break
        if not assigns and not words and not redirs:
            raise self.unexpected()
        return Simple(assigns, words, redirs)

    def parse_if(self) -> If:
        self.pos += 1
        branches: list[tuple[Seq, Seq]] = []
        cond = self.parse_list({"then"})
        self.expect_word("then")
        body = self.parse_list({"elif", "else", "fi"})
        branches.append((cond, body))
        else_: Seq | None = None
        while True:
            self.skip_nl()
            if self.is_word("elif"):
                self.pos += 1
                cond = self.parse_list({"then"})
                self.expect_word("then")
                body = self.parse_list({"elif", "else", "fi"})
                branches.append((cond, body))
            elif self.is_word("else"):
                self.pos += 1
                else_ = self.parse_list({"fi"})
                self.expect_word("fi")
                break
            else:
                self.expect_word("fi")
                break
        return If(branches, else_)

    def parse_for(self) -> For:
        self.pos += 1
        tok = self.next()
        if tok.kind != "WORD" or not _is_name(tok.value):
            raise ShellSyntaxError(f"bad for loop variable: {tok.value}")
        words: list[str] | None = None
        self.skip_nl()
        if self.is_word("in"):
            self.pos += 1
            words = []
            while self.peek().kind == "WORD":
                words.append(self.next().value)
        if self.is_op(";"):
            self.pos += 1
        self.expect_word("do")
        body = self.parse_list({"done"})
        self.expect_word("done")
        return For(tok.value, words, body)

    def parse_loop(self) -> Loop:
        until = self.next().value == "until"
        cond = self.parse_list({"do"})
        self.expect_word("do")
        body = self.parse_list({"done"})
        self.expect_word("done")
        return Loop(until, cond, body)


@functools.lru_cache(maxsize=512)
def parse(src: str) -> Seq:
    """Parse a script. Trees are never mutated by the interpreter, so identical scripts (thousands
    of XCom sidecars) share one cached tree."""
    return Parser(src).parse()
