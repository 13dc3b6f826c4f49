"""The ``modelctl`` command line. The only place that prints or exits."""

from modelctl.cli import (  # noqa: F401
    deploy_cmds,
    dockerfile_cmd,
    edit_cmds,
    oci_cmds,
    report_cmds,
    sign_cmd,
    sync_cmds,
)
from modelctl.cli.main import cli, main

__all__ = ["cli", "main"]
