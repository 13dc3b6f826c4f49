"""docs/commands.md is the one command reference: every command of the CLI has a row in
its table, every option of a command is named in that command's rows, every exit code it
lists exists, and every MODELCTL_/HF_ variable the package reads is in its environment
table. A command or flag added without its docs fails here."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from modelctl.cli import cli
from modelctl.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
# Documented once for all commands ("Options every command shares").
SHARED = {"--manifest", "--lockfile", "--json", "--help"}
# Through the group's own lookup: commands may be registered lazily (LazyGroup).
_CTX = click.Context(cli)
NAMES = sorted(cli.list_commands(_CTX))


def _command(name: str) -> click.Command:
    command = cli.get_command(_CTX, name)
    assert command is not None, name
    return command


def _rows(name: str) -> list[list[str]]:
    """The table rows of ``modelctl NAME ...``, split into cells."""
    rows = []
    for line in COMMANDS.splitlines():
        if re.match(rf"\| `modelctl {re.escape(name)}[ `]", line):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


@pytest.mark.parametrize("name", NAMES)
def test_every_command_and_option_is_in_the_table(name: str) -> None:
    rows = _rows(name)
    assert rows, f"docs/commands.md has no row for `modelctl {name}`"
    synopsis = " ".join(r[0] for r in rows)
    for param in _command(name).params:
        if not isinstance(param, click.Option) or SHARED & set(param.opts):
            continue
        named = any(re.search(rf"{re.escape(o)}(?![\w-])", synopsis) for o in param.opts)
        assert named, f"docs/commands.md: `modelctl {name}` rows do not name {param.opts}"


@pytest.mark.parametrize("name", NAMES)
def test_every_exit_code_listed_exists(name: str) -> None:
    for row in _rows(name):
        codes = {int(c) for c in re.findall(r"\d+", row[2])}
        assert codes, f"no exit codes for {row[0]}"
        assert 0 in codes and codes <= set(EXIT_CODES), row[0]


def test_the_exit_code_table_is_errors_py() -> None:
    section = COMMANDS.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    listed = {int(m) for m in re.findall(r"^\| (\d+) \|", section, flags=re.MULTILINE)}
    assert listed == set(EXIT_CODES)


def test_every_environment_variable_read_is_documented() -> None:
    env_section = COMMANDS.split("## Environment", 1)[1]
    names: set[str] = set()
    for path in (ROOT / "modelctl").rglob("*.py"):
        if "testing" in path.parts:
            continue
        names.update(re.findall(r"[\"'](MODELCTL_[A-Z_]+|HF_[A-Z_]+)[\"']", path.read_text()))
    missing = sorted(n for n in names if f"`{n}" not in env_section)
    assert not missing, f"docs/commands.md's environment table lacks {missing}"
