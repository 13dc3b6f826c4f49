"""Output without importing click: the verbosity levels and :func:`echo`.

The warm ``modelctl sync --frozen`` runs without click (see :mod:`modelctl.cli.main`), so
what it prints goes through here; the click commands print with ``click.echo``, which
writes the same bytes for the same text.
"""

from __future__ import annotations

import sys

QUIET = -1
NORMAL = 0
VERBOSE = 1


def echo(text: str, err: bool = False) -> None:
    """``click.echo(text, err=err)``: the line, then a flush.

    For ASCII text without escape sequences that is one write; any other text goes
    through click itself (it strips ANSI codes off a non-terminal and may re-encode
    a misconfigured stream), so the output is the same either way."""
    if not text.isascii() or "\x1b" in text:
        import click

        click.echo(text, err=err)
        return
    stream = sys.stderr if err else sys.stdout
    if stream is None:  # no stream attached (pythonw): click prints nothing either
        return
    stream.write(text + "\n")
    stream.flush()
