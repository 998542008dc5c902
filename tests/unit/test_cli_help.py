"""Every `kpo-async` command's --help is written for users: its own name, every option explained."""

from __future__ import annotations

import argparse

import pytest

from kpo_async import cli, doctor
from kpo_async.testing.bench import triggerer as bench
from kpo_async.testing.sim import __main__ as sim

COMMANDS = ("", "doctor", "sim", "demo", "bench")


def help_text(capsys: pytest.CaptureFixture[str], command: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"] if command else ["--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_the_command_as_typed_and_no_internals(capsys, command: str) -> None:
    text = help_text(capsys, command)
    assert text.startswith(f"usage: kpo-async {command}".rstrip() + " ")
    for internal in ("``", "REQUIRED_PERMISSIONS", "python -m", ".py", "docs/"):
        assert internal not in text, f"{internal!r} in kpo-async {command} --help"


@pytest.mark.parametrize("parser", [doctor._parser(), sim._parser(), bench._parser()], ids=repr)
def test_every_option_has_help(parser: argparse.ArgumentParser) -> None:
    undocumented = [a.option_strings for a in parser._actions if a.option_strings and not a.help]
    assert undocumented == []


def test_demo_options_are_explained(capsys) -> None:
    text = help_text(capsys, "demo")
    options = [line.split()[0] for line in text.splitlines() if line.startswith("  --")]
    assert options == ["--dag", "--verbose", "--keep", "--ui", "--port", "--seconds"]
    for line in text.splitlines():
        if line.startswith("  --"):
            assert len(line.split()) > 2, f"no help for {line.strip()}"


def test_the_command_list_says_what_each_command_is_for(capsys) -> None:
    text = help_text(capsys, "")
    for command in COMMANDS[1:]:
        assert any(line.split()[:1] == [command] and len(line.split()) > 3 for line in text.splitlines())
