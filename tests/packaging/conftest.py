"""Packaging tests are slow and opt-in: they run only when selected with ``-m packaging``."""

from __future__ import annotations

import re

import pytest

_SELECTED = re.compile(r"(?<!not )\bpackaging\b")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "packaging: builds the wheel and installs it in a fresh venv (slow; opt-in: -m packaging)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _SELECTED.search(config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="opt-in: pytest -m packaging tests/packaging")
    for item in items:
        if "packaging" in item.keywords:
            item.add_marker(skip)
