"""The fault suite's summary table, printed after any run that included fault tests."""

from __future__ import annotations

import pytest

from tests.support.fault_report import REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT.counts:
        return
    terminalreporter.section("modelctl fault suite summary")
    for line in REPORT.lines():
        terminalreporter.write_line(line)
