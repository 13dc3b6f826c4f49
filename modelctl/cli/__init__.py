"""The ``modelctl`` command line. The only place that prints or exits.

:func:`main` (:mod:`modelctl.cli.main`) is the entry point; it runs a plain
``sync --frozen`` without importing click, everything else through the click group
(:mod:`modelctl.cli.group`, here as ``cli``, imported on first use). Each command's module
is imported when that command runs (:class:`modelctl.cli.group.LazyGroup`), so a warm
``modelctl sync`` loads only what it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelctl.cli.main import main

if TYPE_CHECKING:
    from modelctl.cli.group import cli

__all__ = ["cli", "main"]


def __getattr__(name: str) -> Any:
    if name == "cli":
        from modelctl.cli.group import cli

        return cli
    raise AttributeError(f"module 'modelctl.cli' has no attribute {name!r}")
