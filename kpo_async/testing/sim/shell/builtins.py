"""Commands the simulated containers know (busybox-like output and messages)."""

from __future__ import annotations

import asyncio
import posixpath
import re
import time
from collections.abc import Awaitable, Callable

from kpo_async.testing.sim.fs import FsError
from kpo_async.testing.sim.shell.expand import expand_words
from kpo_async.testing.sim.shell.interp import LoopControl, Shell, ShellExit, quote
from kpo_async.testing.sim.shell.io import IO, SIGNAL_NAMES, parse_signal

Builtin = Callable[[Shell, list[str], IO], Awaitable[int]]
BUILTINS: dict[str, Builtin] = {}
_BIN_DIRS = {"/bin", "/usr/bin", "/sbin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"}


def builtin(*names: str) -> Callable[[Builtin], Builtin]:
    def deco(fn: Builtin) -> Builtin:
        for n in names:
            BUILTINS[n] = fn
        return fn

    return deco


def lookup(name: str) -> Builtin | None:
    fn = BUILTINS.get(name)
    if fn is None and "/" in name and posixpath.dirname(name) in _BIN_DIRS:
        fn = BUILTINS.get(posixpath.basename(name))
    return fn


def _err(io: IO, msg: str) -> None:
    io.stderr.write((msg + "\n").encode())


def _out(io: IO, text: str) -> None:
    io.stdout.write(text.encode())


async def run_command(sh: Shell, argv: list[str], io: IO, assigns: list[tuple[str, str]]) -> int:
    fn = lookup(argv[0])
    if fn is None:
        _err(io, f"sh: {argv[0]}: not found")
        return 127
    saved: dict[str, str | None] = {}
    if assigns:
        for name, value in assigns:
            saved[name] = sh.vars.get(name)
            sh.vars[name] = value
            sh.exported.add(name)
    try:
        return await fn(sh, argv, io)
    finally:
        if argv[0] not in ("export", "readonly", "unset"):
            for name, old in saved.items():
                if old is None:
                    sh.vars.pop(name, None)
                else:
                    sh.vars[name] = old


# --- control ---
@builtin("true", ":")
async def b_true(sh: Shell, argv: list[str], io: IO) -> int:
    return 0


@builtin("false")
async def b_false(sh: Shell, argv: list[str], io: IO) -> int:
    return 1


@builtin("exit")
async def b_exit(sh: Shell, argv: list[str], io: IO) -> int:
    status = sh.status
    if len(argv) > 1:
        try:
            status = int(argv[1]) & 0xFF
        except ValueError:
            _err(io, f"sh: exit: Illegal number: {argv[1]}")
            status = 2
    raise ShellExit(status)


@builtin("break", "continue")
async def b_break(sh: Shell, argv: list[str], io: IO) -> int:
    if sh.loop_depth == 0:
        return 0
    levels = int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else 1
    raise LoopControl(argv[0], max(1, levels))


@builtin("trap")
async def b_trap(sh: Shell, argv: list[str], io: IO) -> int:
    args = argv[1:]
    if not args:
        for sig, action in sorted(sh.traps.items()):
            _out(io, f"trap -- {quote(action)} {SIGNAL_NAMES.get(sig, str(sig))}\n")
        return 0
    if args[0] == "--":
        args = args[1:]
    if len(args) == 1 or args[0] == "-":
        action: str | None = None
        specs = args[1:] if args[0] == "-" else args
    else:
        action, specs = args[0], args[1:]
    status = 0
    for spec in specs:
        sig = parse_signal(spec)
        if sig is None:
            _err(io, f"sh: trap: {spec}: invalid signal specification")
            status = 1
            continue
        if action is None:
            sh.traps.pop(sig, None)
        else:
            sh.traps[sig] = action
    return status


@builtin("export", "readonly")
async def b_export(sh: Shell, argv: list[str], io: IO) -> int:
    for arg in argv[1:]:
        if arg.startswith("-"):
            continue
        if "=" in arg:
            name, value = arg.split("=", 1)
            sh.vars[name] = value
        else:
            name = arg
        sh.exported.add(name)
    if len(argv) == 1:
        for k in sorted(sh.exported):
            if k in sh.vars:
                _out(io, f"export {k}={quote(sh.vars[k])}\n")
    return 0


@builtin("unset")
async def b_unset(sh: Shell, argv: list[str], io: IO) -> int:
    for name in argv[1:]:
        if not name.startswith("-"):
            sh.vars.pop(name, None)
            sh.exported.discard(name)
    return 0


@builtin("set")
async def b_set(sh: Shell, argv: list[str], io: IO) -> int:
    args = argv[1:]
    if not args:
        for k in sorted(sh.vars):
            _out(io, f"{k}={quote(sh.vars[k])}\n")
        return 0
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            sh.args = args[i + 1 :]
            return 0
        if a in ("-o", "+o"):
            opt = args[i + 1] if i + 1 < len(args) else ""
            if opt == "errexit":
                sh.errexit = a == "-o"
            elif opt == "xtrace":
                sh.xtrace = a == "-o"
            i += 2
            continue
        if a[:1] in "-+" and len(a) > 1:
            on = a[0] == "-"
            for flag in a[1:]:
                if flag == "e":
                    sh.errexit = on
                elif flag == "x":
                    sh.xtrace = on
            i += 1
            continue
        sh.args = args[i:]
        return 0
    return 0


@builtin("shift")
async def b_shift(sh: Shell, argv: list[str], io: IO) -> int:
    n = int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else 1
    if n > len(sh.args):
        return 1
    sh.args = sh.args[n:]
    return 0


@builtin("eval")
async def b_eval(sh: Shell, argv: list[str], io: IO) -> int:
    return await sh.run_string(" ".join(argv[1:]), io)


@builtin("exec")
async def b_exec(sh: Shell, argv: list[str], io: IO) -> int:
    if len(argv) == 1:
        return 0
    status = await run_command(sh, argv[1:], io, [])
    raise ShellExit(status)


@builtin("nohup", "command", "nice")
async def b_passthrough(sh: Shell, argv: list[str], io: IO) -> int:
    args = [a for a in argv[1:] if not (argv[0] == "command" and a in ("-p",))]
    if not args:
        return 0
    if argv[0] == "command" and args[0] == "-v":
        found = [a for a in args[1:] if lookup(a) is not None]
        for a in found:
            _out(io, f"{a}\n")
        return 0 if found and len(found) == len(args) - 1 else 1
    return await run_command(sh, args, io, [])


@builtin("sh", "bash", "ash", "dash")
async def b_sh(sh: Shell, argv: list[str], io: IO) -> int:
    opts, script, rest = parse_sh_argv(argv)
    if script is None:
        if not rest:
            sub = sh.subshell()
            try:
                return await sub.run_stream(io)
            except ShellExit as e:
                return e.status
        try:
            script = sh.host.fs.read(sh.resolve(rest[0])).decode(errors="replace")
        except FsError:
            _err(io, f"{argv[0]}: can't open '{rest[0]}': No such file or directory")
            return 2
        rest = rest[1:]
    sub = Shell(sh.host, sh.env(), rest[0] if rest else argv[0], rest[1:], "x" in opts, "e" in opts)
    sub.owns_signals = False
    sub.cwd = sh.cwd
    return await sub.run_script(script, io)


def parse_sh_argv(argv: list[str]) -> tuple[str, str | None, list[str]]:
    """(flags, script given with -c or None, remaining args) of `sh [-ex] [-c SCRIPT] args`."""
    flags = ""
    script: str | None = None
    i = 1
    want_c = False
    while i < len(argv) and argv[i].startswith(("-", "+")) and argv[i] not in ("-", "--"):
        if argv[i] in ("-o", "+o"):
            i += 2
            continue
        flags += argv[i][1:]
        if "c" in argv[i][1:]:
            want_c = True
        i += 1
    if i < len(argv) and argv[i] == "--":
        i += 1
    if want_c:
        if i >= len(argv):
            return flags, "", []
        script = argv[i]
        i += 1
    return flags, script, argv[i:]


# --- output ---
_ECHO_ESC = {
    "a": "\a",
    "b": "\b",
    "e": "\x1b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
}


def _escapes(text: str, printf: bool = False) -> tuple[str, bool]:
    """Interpret backslash escapes; returns (text, stop) where stop is set by \\c."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 >= len(text):
            out.append(c)
            i += 1
            continue
        n = text[i + 1]
        if n in _ECHO_ESC:
            out.append(_ECHO_ESC[n])
            i += 2
        elif n == "c":
            return "".join(out), True
        elif n == "0" or (printf and n in "01234567"):
            j = i + 2 if n == "0" and not printf else i + 1
            digits = ""
            while j < len(text) and len(digits) < 3 and text[j] in "01234567":
                digits += text[j]
                j += 1
            out.append(chr(int(digits or "0", 8)))
            i = j
        elif n == "x":
            m = re.match(r"[0-9a-fA-F]{1,2}", text[i + 2 :])
            if m:
                out.append(chr(int(m.group(0), 16)))
                i += 2 + len(m.group(0))
            else:
                out.append("\\x")
                i += 2
        elif printf and n == '"':
            out.append('"')
            i += 2
        else:
            out.append("\\" + n)
            i += 2
    return "".join(out), False


@builtin("echo")
async def b_echo(sh: Shell, argv: list[str], io: IO) -> int:
    args = argv[1:]
    newline, escapes = True, False
    while args and re.fullmatch(r"-[neE]+", args[0]):
        for f in args[0][1:]:
            if f == "n":
                newline = False
            elif f == "e":
                escapes = True
            else:
                escapes = False
        args = args[1:]
    text = " ".join(args)
    if escapes:
        text, stop = _escapes(text)
        if stop:
            newline = False
    io.stdout.write((text + ("\n" if newline else "")).encode("utf-8", "surrogateescape"))
    return 0


_FMT = re.compile(r"%([-+ #0]*)(\*|\d+)?(?:\.(\*|\d+))?([diouxXfFeEgGcsb%])")


@builtin("printf")
async def b_printf(sh: Shell, argv: list[str], io: IO) -> int:
    if len(argv) < 2:
        _err(io, "printf: usage: printf format [arguments]")
        return 2
    fmt, args = argv[1], argv[2:]
    status = 0
    out: list[str] = []

    def next_arg() -> str | None:
        return args.pop(0) if args else None

    def as_int(value: str | None) -> int:
        nonlocal status
        if value is None or value == "":
            return 0
        if value[:1] in "'\"" and len(value) > 1:
            return ord(value[1])
        try:
            return int(value, 0) if re.fullmatch(r"[-+]?0[xX][0-9a-fA-F]+", value) else int(value)
        except ValueError:
            _err(io, f"sh: invalid number '{value}'")
            status = 1
            return 0

    def as_float(value: str | None) -> float:
        nonlocal status
        try:
            return float(value) if value else 0.0
        except ValueError:
            _err(io, f"sh: invalid number '{value}'")
            status = 1
            return 0.0

    while True:
        consumed = False
        pos = 0
        stop = False
        for m in _FMT.finditer(fmt):
            lit, stop = _escapes(fmt[pos : m.start()], printf=True)
            out.append(lit)
            pos = m.end()
            if stop:
                break
            flags, width, prec, conv = m.groups()
            if conv == "%":
                out.append("%")
                continue
            if width == "*":
                width = str(as_int(next_arg()))
                consumed = True
            if prec == "*":
                prec = str(as_int(next_arg()))
                consumed = True
            spec = "%" + flags + (width or "") + (f".{prec}" if prec is not None else "")
            value = next_arg()
            consumed = consumed or value is not None
            if conv in "di":
                out.append((spec + "d") % as_int(value))
            elif conv in "ouxX":
                out.append((spec + conv) % as_int(value))
            elif conv in "fFeEgG":
                out.append((spec + conv) % as_float(value))
            elif conv == "c":
                out.append((spec + "s") % ((value or "")[:1]))
            elif conv == "b":
                text, stop = _escapes(value or "", printf=True)
                out.append((spec + "s") % text)
                if stop:
                    break
            else:
                out.append((spec + "s") % (value or ""))
        if not stop:
            lit, stop = _escapes(fmt[pos:], printf=True)
            out.append(lit)
        if stop or not args or not consumed:
            break
    io.stdout.write("".join(out).encode("utf-8", "surrogateescape"))
    return status


# --- time ---
_DURATION = re.compile(r"^(\d+\.?\d*|\.\d+)([smhd]?)$")


@builtin("sleep")
async def b_sleep(sh: Shell, argv: list[str], io: IO) -> int:
    if len(argv) < 2:
        _err(io, "sleep: missing operand")
        return 1
    total = 0.0
    for arg in argv[1:]:
        if arg in ("inf", "infinity"):
            total = float("inf")
            continue
        m = _DURATION.match(arg)
        if not m:
            _err(io, f"sleep: invalid number '{arg}'")
            return 1
        total += float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if total == float("inf"):
        total = 10**9
    await sh.sleep(total)
    return 0


@builtin("wait")
async def b_wait(sh: Shell, argv: list[str], io: IO) -> int:
    pids = [int(a) for a in argv[1:] if a.isdigit()]
    tasks = [sh.jobs[pid] for pid in pids if pid in sh.jobs] if pids else list(sh.jobs.values())
    if not tasks:
        return 127 if pids else 0
    gathered = asyncio.ensure_future(asyncio.gather(*tasks, return_exceptions=True))
    while not gathered.done():
        if sh.owns_signals and sh.host.signals.pending:
            sh.die_if_untrapped()
            if sh.host.signals.pending:  # trapped: wait returns >128 and the trap runs
                return 128 + sh.host.signals.pending[0]
        waiters: list[asyncio.Future[object]] = [gathered]
        sig_wait = asyncio.ensure_future(sh.host.signals.event.wait()) if sh.owns_signals else None
        if sig_wait is not None:
            waiters.append(sig_wait)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if sig_wait is not None:
            sig_wait.cancel()
    results = gathered.result()
    for pid in pids or list(sh.jobs):
        sh.jobs.pop(pid, None)
    last = results[-1]
    return last if isinstance(last, int) else 1


@builtin("date")
async def b_date(sh: Shell, argv: list[str], io: IO) -> int:
    now = time.time()
    fmt = "%a %b %e %H:%M:%S UTC %Y"
    for a in argv[1:]:
        if a.startswith("+"):
            fmt = a[1:]
        elif a.startswith("-I"):
            fmt = "%Y-%m-%dT%H:%M:%S+00:00" if "second" in a else "%Y-%m-%d"
    fmt = fmt.replace("%s", str(int(now))).replace("%N", f"{int((now % 1) * 1e9):09d}")
    _out(io, time.strftime(fmt, time.gmtime(now)) + "\n")
    return 0


# --- files ---
def _fs_err(e: FsError) -> str:
    return str(e)


@builtin("cat")
async def b_cat(sh: Shell, argv: list[str], io: IO) -> int:
    files = [a for a in argv[1:] if a == "-" or not a.startswith("-")]
    if not files:
        files = ["-"]
    status = 0
    for f in files:
        if f == "-":
            while True:
                chunk = await io.stdin.read()
                if chunk is None:
                    break
                io.stdout.write(chunk)
            continue
        try:
            io.stdout.write(sh.host.fs.read(sh.resolve(f)))
        except FsError as e:
            if str(e) == "Is a directory":
                _err(io, "cat: read error: Is a directory")
            else:
                _err(io, f"cat: can't open '{f}': {e}")
            status = 1
    return status


@builtin("touch")
async def b_touch(sh: Shell, argv: list[str], io: IO) -> int:
    status = 0
    for f in argv[1:]:
        if f.startswith("-"):
            continue
        try:
            sh.host.fs.touch(sh.resolve(f))
        except FsError as e:
            _err(io, f"touch: {f}: {e}")
            status = 1
    return status


@builtin("mkdir")
async def b_mkdir(sh: Shell, argv: list[str], io: IO) -> int:
    parents = any(a.startswith("-") and "p" in a for a in argv[1:])
    status = 0
    skip = False
    for a in argv[1:]:
        if skip:
            skip = False
            continue
        if a == "-m":
            skip = True
            continue
        if a.startswith("-"):
            continue
        try:
            sh.host.fs.mkdir(sh.resolve(a), parents=parents)
        except FsError as e:
            _err(io, f"mkdir: can't create directory '{a}': {e}")
            status = 1
    return status


@builtin("rm")
async def b_rm(sh: Shell, argv: list[str], io: IO) -> int:
    flags = "".join(a[1:] for a in argv[1:] if a.startswith("-") and len(a) > 1)
    force, recursive = "f" in flags, "r" in flags or "R" in flags
    status = 0
    for a in argv[1:]:
        if a.startswith("-") and len(a) > 1:
            continue
        path = sh.resolve(a)
        try:
            if sh.host.fs.is_dir(path) and not recursive:
                _err(io, f"rm: '{a}' is a directory")
                status = 1
                continue
            sh.host.fs.remove(path, recursive=recursive)
        except FsError as e:
            if not force:
                _err(io, f"rm: can't remove '{a}': {e}")
                status = 1
    return status


@builtin("ls")
async def b_ls(sh: Shell, argv: list[str], io: IO) -> int:
    flags = "".join(a[1:] for a in argv[1:] if a.startswith("-") and len(a) > 1)
    paths = [a for a in argv[1:] if not (a.startswith("-") and len(a) > 1)] or ["."]
    show_all = "a" in flags or "A" in flags
    long = "l" in flags
    status = 0
    fs = sh.host.fs

    def entry(name: str, path: str) -> str:
        if not long:
            return name
        is_dir = fs.is_dir(path)
        size = 4096 if is_dir else fs.size(path)
        mode = "drwxr-xr-x" if is_dir else "-rw-r--r--"
        stamp = time.strftime("%b %e %H:%M", time.gmtime())
        return f"{mode}    1 root     root     {size:>9} {stamp} {name}"

    files_out: list[str] = []
    dirs: list[str] = []
    for a in paths:
        path = sh.resolve(a)
        if not fs.exists(path):
            _err(io, f"ls: {a}: No such file or directory")
            status = 1
        elif fs.is_dir(path):
            dirs.append(a)
        else:
            files_out.append(entry(a, path))
    for line in files_out:
        _out(io, line + "\n")
    for k, a in enumerate(dirs):
        if len(paths) > 1:
            _out(io, ("\n" if k or files_out else "") + f"{a}:\n")
        path = sh.resolve(a)
        names = [n for n in fs.listdir(path) if show_all or not n.startswith(".")]
        if long:
            _out(io, f"total {len(names)}\n")
        for n in names:
            _out(io, entry(n, posixpath.join(path, n)) + "\n")
    return status


@builtin("cd")
async def b_cd(sh: Shell, argv: list[str], io: IO) -> int:
    target = argv[1] if len(argv) > 1 else sh.vars.get("HOME", "/")
    path = sh.resolve(target)
    if not sh.host.fs.is_dir(path):
        _err(io, f"sh: cd: can't cd to {target}: No such file or directory")
        return 2
    sh.cwd = path
    return 0


@builtin("pwd")
async def b_pwd(sh: Shell, argv: list[str], io: IO) -> int:
    _out(io, sh.cwd + "\n")
    return 0


@builtin("basename")
async def b_basename(sh: Shell, argv: list[str], io: IO) -> int:
    if len(argv) < 2:
        _err(io, "basename: missing operand")
        return 1
    name = posixpath.basename(argv[1].rstrip("/")) or "/"
    if len(argv) > 2 and name.endswith(argv[2]) and name != argv[2]:
        name = name[: -len(argv[2])]
    _out(io, name + "\n")
    return 0


@builtin("dirname")
async def b_dirname(sh: Shell, argv: list[str], io: IO) -> int:
    if len(argv) < 2:
        _err(io, "dirname: missing operand")
        return 1
    _out(io, (posixpath.dirname(argv[1].rstrip("/")) or ".") + "\n")
    return 0


@builtin("hostname")
async def b_hostname(sh: Shell, argv: list[str], io: IO) -> int:
    _out(io, sh.host.hostname + "\n")
    return 0


@builtin("env", "printenv")
async def b_env(sh: Shell, argv: list[str], io: IO) -> int:
    env = sh.env()
    if argv[0] == "printenv" and len(argv) > 1:
        found = [env[n] for n in argv[1:] if n in env]
        for v in found:
            _out(io, v + "\n")
        return 0 if len(found) == len(argv) - 1 else 1
    if argv[0] == "env" and len(argv) > 1:
        args = argv[1:]
        extra = []
        while args and "=" in args[0]:
            extra.append(tuple(args.pop(0).split("=", 1)))
        if args:
            return await run_command(sh, args, io, extra)  # type: ignore[arg-type]
        env.update(dict(extra))  # type: ignore[arg-type]
    for k, v in env.items():
        _out(io, f"{k}={v}\n")
    return 0


@builtin("seq")
async def b_seq(sh: Shell, argv: list[str], io: IO) -> int:
    args = [a for a in argv[1:] if not re.fullmatch(r"-[a-z]", a)]
    try:
        nums = [float(a) for a in args]
    except ValueError:
        bad = next(a for a in args if not re.fullmatch(r"[-+]?\d*\.?\d+", a))
        _err(io, f"seq: invalid number '{bad}'")
        return 1
    if not 1 <= len(nums) <= 3:
        _err(io, "seq: missing operand" if not nums else "seq: extra operand")
        return 1
    first, incr, last = (
        (1.0, 1.0, nums[0])
        if len(nums) == 1
        else ((nums[0], 1.0, nums[1]) if len(nums) == 2 else (nums[0], nums[1], nums[2]))
    )
    if incr == 0:
        return 1
    integral = all(float(n).is_integer() for n in (first, incr, last))
    out: list[str] = []
    v = first
    while (incr > 0 and v <= last + 1e-9) or (incr < 0 and v >= last - 1e-9):
        out.append(str(int(v)) if integral else f"{v:g}")
        v += incr
        if len(out) >= 1_000_000:
            break
    if out:
        _out(io, "\n".join(out) + "\n")
    return 0


@builtin("kill")
async def b_kill(sh: Shell, argv: list[str], io: IO) -> int:
    args = argv[1:]
    sig = 15
    if args and args[0] == "-l":
        _out(io, " ".join(SIGNAL_NAMES[s] for s in sorted(SIGNAL_NAMES) if s) + "\n")
        return 0
    if args and args[0] == "-s":
        if len(args) < 2:
            _err(io, "sh: kill: option requires an argument -- s")
            return 1
        parsed = parse_signal(args[1])
        args = args[2:]
        if parsed is None:
            _err(io, f"sh: kill: bad signal name '{argv[2]}'")
            return 1
        sig = parsed
    elif args and args[0].startswith("-") and args[0] != "--":
        parsed = parse_signal(args[0][1:])
        if parsed is None:
            _err(io, f"sh: kill: bad signal name '{args[0][1:]}'")
            return 1
        sig = parsed
        args = args[1:]
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        _err(io, "kill: usage: kill [-s sigspec | -signum | -sigspec] pid | jobspec ...")
        return 1
    status = 0
    for a in args:
        if not a.lstrip("-").isdigit():
            _err(io, f"sh: kill: illegal number {a}")
            status = 1
            continue
        pid = int(a)
        if pid in sh.jobs:
            if sig:
                sh.jobs[pid].cancel()
            continue
        if not sh.host.kill(pid, sig):
            _err(io, f"sh: can't kill pid {pid}: No such process")
            status = 1
    return status


# --- test ---
class _TestError(Exception):
    pass


def _int(v: str) -> int:
    try:
        return int(v.strip())
    except ValueError as e:
        raise _TestError(f"sh: invalid number '{v}'") from e


_UNARY = {
    "-e",
    "-f",
    "-d",
    "-s",
    "-r",
    "-w",
    "-x",
    "-n",
    "-z",
    "-L",
    "-h",
    "-p",
    "-S",
    "-b",
    "-c",
    "-t",
    "-g",
    "-u",
    "-k",
    "-O",
    "-G",
}
_BINARY = {"=", "==", "!=", "<", ">", "-eq", "-ne", "-lt", "-le", "-gt", "-ge", "-nt", "-ot", "-ef"}


def _unary(sh: Shell, op: str, arg: str) -> bool:
    fs = sh.host.fs
    if op == "-n":
        return arg != ""
    if op == "-z":
        return arg == ""
    if op == "-t":
        return False
    path = sh.resolve(arg) if arg else ""
    if not arg:
        return False
    if op in ("-e", "-r", "-w", "-x", "-O", "-G"):
        return fs.exists(path) or path in ("/dev/null", "/dev/stdout", "/dev/stderr")
    if op == "-f":
        return fs.is_file(path)
    if op == "-d":
        return fs.is_dir(path)
    if op == "-s":
        return fs.is_file(path) and fs.size(path) > 0
    return False


def _binary(sh: Shell, a: str, op: str, b: str) -> bool:
    if op in ("=", "=="):
        return a == b
    if op == "!=":
        return a != b
    if op == "<":
        return a < b
    if op == ">":
        return a > b
    if op in ("-nt", "-ot", "-ef"):
        return op == "-ef" and sh.resolve(a) == sh.resolve(b)
    x, y = _int(a), _int(b)
    return {"-eq": x == y, "-ne": x != y, "-lt": x < y, "-le": x <= y, "-gt": x > y, "-ge": x >= y}[op]


def _test_expr(sh: Shell, args: list[str]) -> bool:
    n = len(args)
    if n == 0:
        return False
    if n == 1:
        return args[0] != ""
    if n == 2:
        if args[0] == "!":
            return args[1] == ""
        if args[0] in _UNARY:
            return _unary(sh, args[0], args[1])
        raise _TestError(f"sh: {args[0]}: unknown operand")
    if n == 3:
        if args[1] in _BINARY:
            return _binary(sh, args[0], args[1], args[2])
        if args[0] == "!":
            return not _test_expr(sh, args[1:])
        if args[0] == "(" and args[2] == ")":
            return _test_expr(sh, [args[1]])
        if args[1] == "-a":
            return _test_expr(sh, [args[0]]) and _test_expr(sh, [args[2]])
        if args[1] == "-o":
            return _test_expr(sh, [args[0]]) or _test_expr(sh, [args[2]])
        raise _TestError(f"sh: {args[1]}: unknown operand")
    if args[0] == "!" and n == 4:
        return not _test_expr(sh, args[1:])
    for op in ("-o", "-a"):
        if op in args:
            k = len(args) - 1 - args[::-1].index(op)
            left, right = args[:k], args[k + 1 :]
            if op == "-o":
                return _test_expr(sh, left) or _test_expr(sh, right)
            return _test_expr(sh, left) and _test_expr(sh, right)
    if args[0] == "(" and args[-1] == ")":
        return _test_expr(sh, args[1:-1])
    raise _TestError("sh: syntax error: unexpected operator")


@builtin("test", "[", "[[")
async def b_test(sh: Shell, argv: list[str], io: IO) -> int:
    args = argv[1:]
    if argv[0] in ("[", "[["):
        close = "]" if argv[0] == "[" else "]]"
        if not args or args[-1] != close:
            _err(io, f"sh: missing {close}")
            return 2
        args = args[:-1]
    try:
        return 0 if _test_expr(sh, args) else 1
    except _TestError as e:
        _err(io, str(e))
        return 2


# --- small text tools ---
@builtin("head", "tail")
async def b_head(sh: Shell, argv: list[str], io: IO) -> int:
    n = 10
    files: list[str] = []
    args = argv[1:]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-n" and i + 1 < len(args):
            n = int(args[i + 1].lstrip("+"))
            i += 2
            continue
        if re.fullmatch(r"-\d+", a):
            n = int(a[1:])
        elif a.startswith("-n"):
            n = int(a[2:])
        else:
            files.append(a)
        i += 1
    data = b""
    if files:
        try:
            data = sh.host.fs.read(sh.resolve(files[0]))
        except FsError as e:
            _err(io, f"{argv[0]}: can't open '{files[0]}': {e}")
            return 1
    else:
        data = await io.stdin.read_all()
    lines = data.splitlines(keepends=True)
    io.stdout.write(b"".join(lines[:n] if argv[0] == "head" else lines[-n:] if n else []))
    return 0


@builtin("wc")
async def b_wc(sh: Shell, argv: list[str], io: IO) -> int:
    flags = "".join(a[1:] for a in argv[1:] if a.startswith("-"))
    files = [a for a in argv[1:] if not a.startswith("-")]
    if files:
        try:
            data = sh.host.fs.read(sh.resolve(files[0]))
        except FsError as e:
            _err(io, f"wc: can't open '{files[0]}': {e}")
            return 1
    else:
        data = await io.stdin.read_all()
    counts = {"l": data.count(b"\n"), "w": len(data.split()), "c": len(data)}
    shown = [str(counts[f]) for f in "lwc" if f in flags] or [str(counts[f]) for f in "lwc"]
    _out(io, " ".join(shown) + (f" {files[0]}" if files else "") + "\n")
    return 0


@builtin("tee")
async def b_tee(sh: Shell, argv: list[str], io: IO) -> int:
    append = "-a" in argv[1:]
    files = [a for a in argv[1:] if not a.startswith("-")]
    sinks = [s for s in (sh.open_sink(f, append, io) for f in files) if s is not None]
    while True:
        chunk = await io.stdin.read()
        if chunk is None:
            break
        io.stdout.write(chunk)
        for s in sinks:
            s.write(chunk)
    return 0 if len(sinks) == len(files) else 1


@builtin("read")
async def b_read(sh: Shell, argv: list[str], io: IO) -> int:
    names = [a for a in argv[1:] if not a.startswith("-")] or ["REPLY"]
    data = b""
    while b"\n" not in data:
        chunk = await io.stdin.read()
        if chunk is None:
            break
        data += chunk
    if not data:
        return 1
    line = data.split(b"\n", 1)[0].decode(errors="replace")
    parts = line.split(None, len(names) - 1)
    for k, name in enumerate(names):
        sh.set_var(name, parts[k] if k < len(parts) else "")
    return 0


async def run_argv(sh: Shell, argv: list[str], io: IO) -> int:
    """Run an argv that is not a shell script (a bare builtin), as a process."""
    try:
        return await run_command(sh, argv, io, [])
    except ShellExit as e:
        return e.status
    except LoopControl:
        return 0


__all__ = ["BUILTINS", "expand_words", "lookup", "parse_sh_argv", "run_argv", "run_command"]
