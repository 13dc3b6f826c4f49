"""The entry point of the ``modelctl`` command: :func:`main` runs the click group
(:mod:`modelctl.cli.group`) and turns modelctl errors into one message and an exit code."""

from __future__ import annotations

import os
import sys

import click

from modelctl.cli.group import cli
from modelctl.errors import EXIT_INTERRUPTED, ModelctlError, redact
from modelctl.settings import token_values


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs click, maps modelctl errors to their exit codes, never a traceback."""
    args = sys.argv[1:] if argv is None else argv
    try:
        cli.main(args=args, prog_name="modelctl", standalone_mode=False)
    except ModelctlError as exc:
        secrets = token_values(os.environ)
        click.echo(redact(exc.render(), secrets), err=True)
        if _verbose(args) and exc.__cause__ is not None:
            cause = exc.__cause__
            click.echo(redact(f"  caused by: {type(cause).__name__}: {cause}", secrets), err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    return 0


def _verbose(args: list[str]) -> bool:
    """-v/--verbose given before the command (the context is gone once click returns)."""
    for arg in args:
        if arg in ("-v", "--verbose"):
            return True
        if not arg.startswith("-"):
            return False
    return False


if __name__ == "__main__":
    sys.exit(main())
