"""The documentation cannot fall behind the code: arguments, trigger kwargs, nav, links, the build."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kpo_async import AsyncKubernetesPodOperator
from kpo_async.operator import _ACCEPTED_WITHOUT_EFFECT
from triggers.pod import PodTrigger

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: A table row documenting an argument: | `name` | `default` | meaning |
_ARGUMENT_ROW = re.compile(r"^\|\s*`(\w+)`\s*\|\s*`([^`]*)`\s*\|\s*\S")
#: Markdown links and images: [text](target) / ![alt](target); and autolinks <scheme:...>.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_AUTOLINK = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.-]*:[^>\s]+)>")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")


def documented_default(value: Any) -> str:
    """How arguments.md writes a default: strings in double quotes, everything else as repr."""
    return f'"{value}"' if isinstance(value, str) else repr(value)


def init_parameters() -> dict[str, inspect.Parameter]:
    parameters = dict(inspect.signature(AsyncKubernetesPodOperator.__init__).parameters)
    parameters.pop("self")
    return {n: p for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}


def argument_rows() -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in (DOCS / "arguments.md").read_text().splitlines():
        match = _ARGUMENT_ROW.match(line)
        if match:
            name, default = match.groups()
            assert name not in rows, f"{name} is documented twice in docs/arguments.md"
            rows[name] = default
    return rows


def test_every_operator_argument_is_documented_with_its_default() -> None:
    rows = argument_rows()
    missing = [name for name in init_parameters() if name not in rows]
    assert not missing, f"docs/arguments.md lacks a row | `name` | `default` | meaning | for {missing}"
    wrong = {
        name: (rows[name], documented_default(p.default))
        for name, p in init_parameters().items()
        if rows[name] != documented_default(p.default)
    }
    assert not wrong, f"documented default != signature default: {wrong}"
    stale = [name for name in rows if name not in init_parameters()]
    assert not stale, f"docs/arguments.md documents arguments the operator no longer has: {stale}"


def test_every_argument_accepted_without_effect_is_explained() -> None:
    for page in ("arguments.md", "migration.md"):
        text = (DOCS / page).read_text()
        missing = [name for name in _ACCEPTED_WITHOUT_EFFECT if f"`{name}`" not in text]
        assert not missing, f"docs/{page} does not explain {missing}"


def test_every_templated_field_is_listed() -> None:
    text = (DOCS / "arguments.md").read_text()
    listed = re.split(r"Templated \(Jinja\) fields[^:]*:", text, maxsplit=1)[1].split("\n\n", 1)[0]
    assert set(re.findall(r"`(\w+)`", listed)) == set(AsyncKubernetesPodOperator.template_fields)


def test_every_trigger_kwarg_is_explained() -> None:
    """how-it-works.md says what is stored in the DB; it must name every serialized kwarg."""
    _, kwargs = PodTrigger(pod_name="p", namespace="n", cluster={}).serialize()
    text = (DOCS / "how-it-works.md").read_text()
    missing = [key for key in kwargs if f"`{key}`" not in text and f'"{key}"' not in text]
    assert not missing, f"docs/how-it-works.md does not explain trigger kwargs {missing}"


def nav_files(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [f for item in node for f in nav_files(item)]
    if isinstance(node, dict):
        return [f for value in node.values() for f in nav_files(value)]
    return []


#: Pages other owners are writing; once one lands it goes into the nav (and this set shrinks).
PENDING_PAGES: set[str] = set()


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = nav_files(config["nav"])
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert not set(listed) - pages, "mkdocs.yml nav lists pages that do not exist"
    assert not pages - set(listed) - PENDING_PAGES, "docs/*.md pages missing from the mkdocs.yml nav"
    assert len(listed) == len(set(listed))


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def links(path: Path) -> list[str]:
    text = path.read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks are not links
    text = re.sub(r"`[^`\n]*`", "", text)
    return _LINK.findall(text) + _AUTOLINK.findall(text)


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_are_relative_or_http(path: Path) -> None:
    """External links are http(s) only; relative links from README.md point at existing files.

    mkdocs --strict checks the links between pages of the site; this checks what it does not.
    """
    for target in links(path):
        scheme = _SCHEME.match(target)
        if scheme:
            assert scheme.group(1) in ("http", "https"), f"{path.name}: link {target!r} is not http(s)"
            continue
        assert not target.startswith("/"), f"{path.name}: absolute path link {target!r}"
        if path.name == "README.md" and not target.startswith("#"):
            assert (ROOT / target.split("#", 1)[0]).exists(), f"README.md: {target!r} does not exist"


@pytest.mark.skipif(shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None, reason="mkdocs")
def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr
    assert (tmp_path / "site" / "arguments.html").exists()
