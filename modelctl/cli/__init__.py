"""The ``modelctl`` command line. The only place that prints or exits."""

from modelctl.cli import deploy_cmds, dockerfile_cmd, oci_cmds, sync_cmds  # noqa: F401
from modelctl.cli.main import cli, main

__all__ = ["cli", "main"]
