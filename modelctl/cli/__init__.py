"""The ``modelctl`` command line. The only place that prints or exits."""

from modelctl.cli.main import cli, main

__all__ = ["cli", "main"]
