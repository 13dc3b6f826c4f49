"""The entry point of the ``modelctl`` command: :func:`main`.

Every command runs through the click group (:mod:`modelctl.cli.group`), except the one a
container or a CI job runs at every start: a plain ``modelctl sync --frozen``. Importing
click costs about 20 ms, a fifth of that command's run (issue 19), so
:func:`plain_frozen_sync` recognises exactly these forms and runs them without click::

    modelctl [-q|--quiet|-v|--verbose] sync --frozen [--offline] [-q|--quiet]
             [--lockfile PATH] [--manifest|-m PATH] [--target DIR]

(options in any order, each value as the next argument or ``--opt=VALUE``). Anything
else (``--help``, any other option, a repeated or dash-led value, a value click would
refuse, shell completion) goes to click unchanged, and so does any error click would
report itself. Both ways run :func:`modelctl.cli.sync_run.run_sync` and report errors
here, so the output and the exit code are the same (``tests/cli/test_fast_entry.py``
runs both and compares).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO, cast

from modelctl.cli.echo import NORMAL, QUIET, VERBOSE, echo
from modelctl.errors import EXIT_INTERRUPTED, ModelctlError, redact

if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from modelctl.values import dataclass  # a NamedTuple would cost ~0.5 ms more

_GLOBAL = {"-q": QUIET, "--quiet": QUIET, "-v": VERBOSE, "--verbose": VERBOSE}
_FLAGS = {"--frozen": "frozen", "--offline": "offline", "-q": "quiet", "--quiet": "quiet"}
_VALUES = {
    "--lockfile": "lockfile",
    "--manifest": "manifest",
    "-m": "manifest",
    "--target": "target",
}
_COMPLETE_VAR = "_MODELCTL_COMPLETE"  # click's shell-completion request for prog "modelctl"


@dataclass(frozen=True)
class FrozenSync:
    """A plain ``sync --frozen`` (see the module docstring), as click would have parsed it."""

    lockfile: Path | None
    manifest: Path | None
    target: Path | None
    offline: bool
    quiet: bool
    level: int


def main(argv: list[str] | None = None, *, fast: bool = True) -> int:
    """Run ``modelctl`` with ``argv`` (default ``sys.argv[1:]``): map modelctl errors to
    their message and exit code, never a traceback; return the exit code.

    ``fast=False`` sends a plain ``sync --frozen`` through click too (the tests compare)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        plain = plain_frozen_sync(args, os.environ) if fast else None
        if plain is None:
            return _click_main(args)
        return _run_plain(plain)
    except ModelctlError as exc:
        from modelctl.settings import token_values

        secrets = token_values(os.environ)
        echo(redact(exc.render(), secrets), err=True)
        if _verbose(args) and exc.__cause__ is not None:
            cause = exc.__cause__
            echo(redact(f"  caused by: {type(cause).__name__}: {cause}", secrets), err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        echo("interrupted", err=True)
        return EXIT_INTERRUPTED


def _click_main(args: list[str]) -> int:
    import click

    from modelctl.cli.group import cli

    try:
        cli.main(args=args, prog_name="modelctl", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    return 0


def _run_plain(plain: FrozenSync) -> int:
    """The sync, with what click's ``main`` adds around a command (standalone_mode=False)."""
    from modelctl.cli.sync_run import run_sync

    try:
        run_sync(
            manifest_path=plain.manifest,
            lockfile_path=plain.lockfile,
            target=plain.target,
            offline=plain.offline,
            frozen=True,
            quiet=plain.quiet,
            level=plain.level,
        )
    except (EOFError, KeyboardInterrupt):
        echo("", err=True)  # click's blank line, closing the terminal's ^C echo
        echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        # As click: a closed pipe (`modelctl sync ... | head`) ends the run with 1, quietly.
        sys.stdout = cast(TextIO, _PacifyFlush(sys.stdout))
        sys.stderr = cast(TextIO, _PacifyFlush(sys.stderr))
        sys.exit(1)
    return 0


def plain_frozen_sync(args: Sequence[str], env: Mapping[str, str]) -> FrozenSync | None:
    """``args`` as a plain ``sync --frozen`` (see the module docstring), or None: click's."""
    if env.get(_COMPLETE_VAR):
        return None
    levels = set()
    i = 0
    while i < len(args) and args[i] in _GLOBAL:
        levels.add(_GLOBAL[args[i]])
        i += 1
    if len(levels) > 1 or i >= len(args) or args[i] != "sync":
        return None  # -q with -v is click's usage error
    flags: set[str] = set()
    values: dict[str, str] = {}
    rest = args[i + 1 :]
    j = 0
    while j < len(rest):
        arg = rest[j]
        j += 1
        if arg in _FLAGS:
            flags.add(_FLAGS[arg])
            continue
        name, eq, value = arg.partition("=")
        if not (eq and name.startswith("--") and name in _VALUES):
            if arg not in _VALUES or j >= len(rest):
                return None
            name, value = arg, rest[j]
            j += 1
        key = _VALUES[name]
        if key in values or not value or value.startswith("-"):
            return None
        values[key] = value
    if "frozen" not in flags:
        return None
    if "target" not in values and env.get("MODELCTL_TARGET"):
        values["target"] = env["MODELCTL_TARGET"]  # click's envvar for --target
    # click.Path(dir_okay=False) for the files, (file_okay=False) for --target, readable.
    if not all(_path_ok(values.get(k), dir_ok=False) for k in ("lockfile", "manifest")):
        return None
    if not _path_ok(values.get("target"), dir_ok=True):
        return None
    return FrozenSync(
        lockfile=_path(values.get("lockfile")),
        manifest=_path(values.get("manifest")),
        target=_path(values.get("target")),
        offline="offline" in flags,
        quiet="quiet" in flags,
        level=levels.pop() if levels else NORMAL,
    )


def _path(value: str | None) -> Path | None:
    return Path(value) if value is not None else None


def _path_ok(value: str | None, *, dir_ok: bool) -> bool:
    """Would click.Path accept ``value`` (with ``dir_okay=False`` for a file option,
    ``file_okay=False`` for a folder option): absent, or there as such and readable."""
    if value is None:
        return True
    try:
        st = os.stat(value)
    except OSError:
        return True  # click.Path(exists=False) takes it as it is
    if dir_ok and stat.S_ISREG(st.st_mode):
        return False
    if not dir_ok and stat.S_ISDIR(st.st_mode):
        return False
    return os.access(value, os.R_OK)


def _verbose(args: list[str]) -> bool:
    """-v/--verbose given before the command (the context is gone once click returns)."""
    for arg in args:
        if arg in ("-v", "--verbose"):
            return True
        if not arg.startswith("-"):
            return False
    return False


class _PacifyFlush:
    """A stream whose ``flush`` ignores a closed pipe (click's PacifyFlushWrapper)."""

    def __init__(self, wrapped: IO[Any]) -> None:
        self.wrapped = wrapped

    def flush(self) -> None:
        try:
            self.wrapped.flush()
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


if __name__ == "__main__":
    sys.exit(main())
