"""The ``modelctl`` command line. The only place that prints or exits.

Each command's module is imported when that command runs (see
:class:`modelctl.cli.group.LazyGroup`), so a warm ``modelctl sync`` loads only what it uses.
"""

from modelctl.cli.group import cli
from modelctl.cli.main import main

__all__ = ["cli", "main"]
