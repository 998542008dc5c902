#!/usr/bin/env python3
"""Guard the layout: the runtime stays small, acyclic and apart from the workshop.

The runtime code is ``kpo_async/*.py`` (but the ``cli`` entry point, which lazily loads the
workshop for ``kpo-async sim|demo|bench``) and ``triggers/``. Rules:

1. no runtime module imports ``kpo_async.testing`` (the simulator, harness, bench, soak, demo),
   not even lazily inside a function;
2. no import cycle between runtime modules (module-level imports; ``TYPE_CHECKING`` ones aside);
3. what a worker or a triggerer imports (the modules reachable from ``LOADED_BY_AIRFLOW``, lazy
   imports included) holds at most ``MAX_LINES`` lines of code, not counting docstrings,
   comments and blank lines;
4. no function longer than ``MAX_FUNCTION_LINES`` such lines; the operator's constructor, whose
   signature declares the official operator's arguments, is measured without its signature;
5. the rooms of docs/architecture.md's room table are the code's: each runtime module is in
   exactly one room, every file the table names exists, and a module imports (lazily or not) only
   modules of its own room or of the rooms its "May import" column names.

Usage: ``python tools/check_layout.py [--report]`` (exit status 1 on a violation).
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS_PAGE = Path("docs/architecture.md")
ROOMS_HEADING = "## The rooms"
WORKSHOP = "kpo_async.testing"
ENTRY_POINTS = {"kpo_async.cli"}
#: What Airflow loads on a worker or triggerer: DAG files import the operator, the triggerer
#: imports the trigger's classpath, the providers manager the provider info, hook and links, and
#: a DAG file using ``@task.kpo_async`` the decorators (registered as task-decorators).
LOADED_BY_AIRFLOW = (
    "kpo_async",
    "kpo_async.operator",
    "triggers.pod",
    "kpo_async.provider",
    "kpo_async.hook",
    "kpo_async.decorators",
)
#: Issue 10 asks for 3,000. The runtime grew to 4,117 lines with the official operator's parity
#: (issue 11), the decorators and issue 13's log record budget, and is 3,700 after issue 20's trims
#: (value checks left to the API server's 422, one path each for adopt-or-create, env walks and the
#: follow engine, dead code and forwarding wrappers gone). Issue 22 (relaunch after a disruption,
#: the quota wait, failing fast, the pod's timeline, the finalizer that keeps a taken-away pod
#: readable) added about 390 lines; structural cuts in the same sessions (pod exec folded into xcom,
#: one log reader per container, one checking walker for Kubernetes objects, retry constants instead
#: of a Backoff object, ...) paid all of them and 42 more: 3,658. The next feature pays for itself.
#: Issue 23 (end_from_trigger: the trigger ends the task itself, the failure report and cleanup shared
#: with the worker in finish.py) added about 150 lines; cuts in the same session (one end_from_trigger
#: path, one-use helpers inlined, serialize from a tuple of names, the delete decision from a table, the
#: triggers built in _submit) paid 109 of them. The other 41 would only have come from packing constant
#: tables behind "fmt: off", which was not done: the cap rose from 3,658 to 3,699. A simplicity pass
#: after issue 23 cut 19 lines (one-use helpers and wrappers inlined, one-use temporaries folded, a
#: watch response released by `async with`); the trigger's early look for a predecessor's end (which
#: pays Airflow's one-time execution-API build while the pod runs) took 5 of them back: 3,685.
MAX_LINES = 3685
MAX_FUNCTION_LINES = 60
SIGNATURE_EXEMPT = {("kpo_async.operator", "AsyncKubernetesPodOperator.__init__")}


def runtime_modules(root: Path = ROOT) -> dict[str, Path]:
    paths = [*sorted((root / "kpo_async").glob("*.py")), *sorted((root / "triggers").glob("*.py"))]
    modules = {}
    for path in paths:
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name not in ENTRY_POINTS:
            modules[name] = path
    return modules


def code_lines(source: str, tree: ast.AST) -> set[int]:
    """Line numbers holding code: no docstring, comment or blank line."""
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in skip or token.type == tokenize.ENDMARKER:
            continue
        lines.update(n for n in range(token.start[0], token.end[0] + 1) if n not in docstrings)
    return lines


def imported_modules(tree: ast.Module, module: str, *, top_level_only: bool) -> set[str]:
    """Names of the modules `module` imports (``from kpo_async import api`` counts as kpo_async.api)."""
    nodes: list[ast.AST] = []
    if top_level_only:
        pending: list[ast.stmt] = list(tree.body)
        while pending:
            stmt = pending.pop()
            if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
                pending.extend(stmt.orelse)
            elif isinstance(stmt, (ast.If, ast.Try)):
                pending.extend([*stmt.body, *stmt.orelse, *getattr(stmt, "finalbody", [])])
            else:
                nodes.append(stmt)
    else:
        nodes = list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                package = module.split(".")[: -node.level] if module.count(".") else [module]
                base = ".".join([*package, base] if base else package)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def reachable(roots: tuple[str, ...], imports: dict[str, set[str]], modules: dict[str, Path]) -> set[str]:
    seen: set[str] = set()
    pending = [root for root in roots if root in modules]
    while pending:
        module = pending.pop()
        if module not in seen:
            seen.add(module)
            pending.extend(m for m in imports[module] if m in modules and m not in seen)
    return seen


def long_functions(module: str, tree: ast.Module, lines: set[int]) -> list[str]:
    problems = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                start = child.body[0].lineno if (module, name) in SIGNATURE_EXEMPT else child.lineno
                length = sum(1 for n in range(start, (child.end_lineno or start) + 1) if n in lines)
                if length > MAX_FUNCTION_LINES:
                    problems.append(f"{module}.{name} has {length} lines of code (> {MAX_FUNCTION_LINES})")
                visit(child, f"{name}.")

    visit(tree, "")
    return problems


def runtime_imports(tree: ast.Module, module: str, modules: dict[str, Path]) -> set[str]:
    """The runtime modules `module` imports anywhere (``from kpo_async import api`` is kpo_async.api)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level] if module.count(".") else [module]
                base = ".".join([*package, node.module] if node.module else package)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in modules else base)
    found.discard(module)
    return found & set(modules)


class Room:
    def __init__(self, name: str, files: list[str], may_import: list[str]) -> None:
        self.name, self.files, self.may_import = name, files, may_import


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _plain(text: str) -> str:
    """A room's name as the table writes it, without emphasis or a note in parentheses."""
    return re.sub(r"\(.*?\)", "", text).replace("*", "").replace("`", "").strip()


def _room_files(cell: str, root: Path) -> list[str]:
    """Paths of the backticked files and folders; a bare name is in the folder named before it."""
    folder, paths = "", []
    for name in re.findall(r"`([^`]+)`", cell):
        if "/" in name and (root / name.split("/")[0]).is_dir():  # a path from the project's root
            folder = name if name.endswith("/") else name.rpartition("/")[0] + "/"
            paths.append(name)
        else:
            paths.append(folder + name)
    return paths


def read_rooms(root: Path) -> list[Room]:
    """The room table under ``## The rooms`` of docs/architecture.md."""
    lines = (root / ROOMS_PAGE).read_text().splitlines()
    start = lines.index(ROOMS_HEADING) + 1
    end = next((i for i, line in enumerate(lines[start:]) if line.startswith("## ")), len(lines))
    table = [line for line in lines[start : start + end] if line.startswith("|")]
    header = [_plain(cell).lower() for cell in _cells(table[0])]
    column = {name: header.index(name) for name in ("room", "files", "may import")}
    rooms = []
    for line in table[2:]:
        cells = _cells(line)
        allowed = [_plain(item) for item in _plain(cells[column["may import"]]).split(",")]
        files = _room_files(cells[column["files"]], root)
        rooms.append(Room(_plain(cells[column["room"]]), files, [item for item in allowed if item]))
    return rooms


def _allowed_rooms(rooms: list[Room], problems: list[str]) -> dict[str, set[str]]:
    """Per room, the rooms it may import (its own included)."""
    names = {room.name.lower(): room.name for room in rooms}
    allowed: dict[str, set[str]] = {}
    for room in rooms:
        allowed[room.name] = {room.name}
        for item in room.may_import:
            if item.lower() == "anything":
                allowed[room.name] = set(names.values())
            elif item.lower() in names:
                allowed[room.name].add(names[item.lower()])
            elif item not in ("-", "—", "nothing"):
                problems.append(
                    f'{ROOMS_PAGE}: room {room.name} may import "{item}", which is no room. Fix: name '
                    f'rooms of the Room column ({", ".join(names.values())}), "anything" or "—" there'
                )
    return allowed


def _room_of(rooms: list[Room], root: Path, modules: dict[str, Path], problems: list[str]) -> dict[str, str]:
    """Each runtime module's room; a folder in the Files column holds every module below it."""
    room_of: dict[str, str] = {}
    for room in rooms:
        for path in room.files:
            if not (root / path).exists():
                problems.append(
                    f"{ROOMS_PAGE}: room {room.name} lists {path}, which does not exist. Fix: remove it "
                    "from the room's Files (or name the module that replaced it)"
                )
            for module, module_path in modules.items():
                listed = module_path.relative_to(root).as_posix()
                if listed != path and not (path.endswith("/") and listed.startswith(path)):
                    continue
                if module in room_of:
                    problems.append(
                        f"{ROOMS_PAGE}: {listed} is in rooms {room_of[module]} and {room.name}. "
                        "Fix: keep it in one"
                    )
                room_of.setdefault(module, room.name)
    for module, module_path in modules.items():
        if module not in room_of:
            problems.append(
                f"{module_path.relative_to(root)} is in no room of {ROOMS_PAGE}. Fix: add it to the "
                "Files of the room whose job it does"
            )
    return room_of


def room_problems(root: Path, modules: dict[str, Path], imports: dict[str, set[str]]) -> list[str]:
    """Rule 5: the page's rooms against the modules and their imports."""
    rooms = read_rooms(root)
    problems: list[str] = []
    allowed = _allowed_rooms(rooms, problems)
    room_of = _room_of(rooms, root, modules, problems)
    for module in sorted(room_of):
        room = room_of[module]
        for target in sorted(imports.get(module, set())):
            if target in room_of and room_of[target] not in allowed[room]:
                problems.append(
                    f"{modules[module].relative_to(root)} (room {room}) imports {target} (room "
                    f"{room_of[target]}), which room {room} may not import (it may import: "
                    f"{', '.join(sorted(allowed[room] - {room})) or 'no other room'}). Fix: move what "
                    f"it needs into a room {room} may import, or, if the design changed, add "
                    f'{room_of[target]} to {room}\'s "May import" in {ROOMS_PAGE}'
                )
    return problems


def check(report: bool) -> list[str]:
    modules = runtime_modules()
    problems: list[str] = []
    graph: dict[str, set[str]] = {}
    every_import: dict[str, set[str]] = {}
    room_imports: dict[str, set[str]] = {}
    sizes: dict[str, int] = {}
    for module, path in modules.items():
        source = path.read_text()
        tree = ast.parse(source)
        every_import[module] = imported_modules(tree, module, top_level_only=False)
        room_imports[module] = runtime_imports(tree, module, modules)
        for name in sorted(every_import[module]):
            if name == WORKSHOP or name.startswith(WORKSHOP + "."):
                problems.append(f"{path.relative_to(ROOT)} imports the workshop ({name})")
        graph[module] = {m for m in imported_modules(tree, module, top_level_only=True) if m in modules}
        graph[module].discard(module)
        lines = code_lines(source, tree)
        sizes[module] = len(lines)
        problems.extend(long_functions(module, tree, lines))
    problems.extend(room_problems(ROOT, modules, room_imports))
    loaded = reachable(LOADED_BY_AIRFLOW, every_import, modules)
    total = sum(sizes[m] for m in loaded)
    if report:
        for module, path in modules.items():
            note = "" if module in loaded else "  (not loaded by a worker or triggerer)"
            print(f"{sizes[module]:6d}  {path.relative_to(ROOT)}{note}")
        print(f"{total:6d}  loaded by a worker or triggerer (limit {MAX_LINES})")
    cycle = find_cycle(graph)
    if cycle:
        problems.append(f"import cycle in the runtime: {' -> '.join(cycle)}")
    if total > MAX_LINES:
        problems.append(f"what a worker or triggerer imports has {total} lines of code (> {MAX_LINES})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", action="store_true", help="print the lines of code per module")
    problems = check(parser.parse_args(argv).report)
    for problem in problems:
        print(f"layout: {problem}", file=sys.stderr)
    if not problems:
        print("layout: ok (runtime apart from the workshop, acyclic, within its size limits, in its rooms)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
