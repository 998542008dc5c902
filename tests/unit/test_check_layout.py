"""tools/check_layout.py's room rule on a tiny fake project: the page's table against the code."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

TABLE = """# Architecture

## The rooms

| Room | Files | Job | May import |
| --- | --- | --- | --- |
| **Names** | `kpo_async/names.py`, `gone.py` | names | — |
| Core | `kpo_async/core.py` | reach the cluster | Names |
| Trigger (triggerer) | `triggers/`, `kpo_async/follow.py` | follow | Core, Names (the labels) |

## Next section

| Room | Files | Job | May import |
| --- | --- | --- | --- |
| Ignored | `kpo_async/unlisted.py` | not the room table | anything |
"""


def load_checker() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "tools" / "check_layout.py"
    spec = importlib.util.spec_from_file_location("check_layout", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def project(tmp_path: Path) -> Path:
    files = {
        "docs/architecture.md": TABLE,
        "kpo_async/__init__.py": "",
        "kpo_async/names.py": "LABEL = 'x'\n",
        "kpo_async/core.py": "from kpo_async.names import LABEL\n",
        "kpo_async/follow.py": "from kpo_async import core\n\ndef f():\n    from kpo_async.names import X\n",
        "kpo_async/unlisted.py": "",
        "triggers/__init__.py": "",
        "triggers/pod.py": "from kpo_async.follow import f\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def problems(checker: ModuleType, root: Path) -> list[str]:
    modules = checker.runtime_modules(root)
    imports = {m: checker.runtime_imports(ast.parse(p.read_text()), m, modules) for m, p in modules.items()}
    return checker.room_problems(root, modules, imports)


def test_rooms_name_unknown_missing_and_unlisted_modules(project: Path) -> None:
    checker = load_checker()
    assert problems(checker, project) == [
        "docs/architecture.md: room Names lists kpo_async/gone.py, which does not exist. "
        "Fix: remove it from the room's Files (or name the module that replaced it)",
        "kpo_async/__init__.py is in no room of docs/architecture.md. Fix: add it to the Files of the "
        "room whose job it does",
        "kpo_async/unlisted.py is in no room of docs/architecture.md. Fix: add it to the Files of the "
        "room whose job it does",
    ]


def test_an_import_the_may_import_column_does_not_allow_fails(project: Path) -> None:
    checker = load_checker()
    (project / "kpo_async/gone.py").write_text("")
    (project / "kpo_async/__init__.py").unlink()
    (project / "kpo_async/unlisted.py").unlink()
    assert problems(checker, project) == []
    (project / "kpo_async/names.py").write_text("def later():\n    from kpo_async.follow import f\n")
    assert problems(checker, project) == [
        "kpo_async/names.py (room Names) imports kpo_async.follow (room Trigger), which room Names may "
        "not import (it may import: no other room). Fix: move what it needs into a room Names may "
        'import, or, if the design changed, add Trigger to Names\'s "May import" in docs/architecture.md'
    ]


def test_a_module_in_two_rooms_and_an_unknown_room_are_named(project: Path) -> None:
    checker = load_checker()
    page = project / "docs/architecture.md"
    page.write_text(
        page.read_text()
        .replace("| Core, Names (the labels) |", "| Core, Nmaes |", 1)
        .replace("`kpo_async/core.py`", "`kpo_async/core.py`, `names.py`", 1)
    )
    found = problems(checker, project)
    assert "docs/architecture.md: kpo_async/names.py is in rooms Names and Core. Fix: keep it in one" in found
    assert any(
        p.startswith('docs/architecture.md: room Trigger may import "Nmaes", which is no room') for p in found
    )
