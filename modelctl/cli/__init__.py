"""The ``modelctl`` command line. The only place that prints or exits.

Each command's module is imported when that command runs (see
:class:`modelctl.cli.main.LazyGroup`), so a warm ``modelctl sync`` loads only what it uses.
"""

from modelctl.cli.main import cli, main

__all__ = ["cli", "main"]
