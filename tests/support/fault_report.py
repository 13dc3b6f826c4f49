"""What the fault suite tried, for the summary table printed at the end of a run.

Tests add to ``REPORT``; ``tests/faults/conftest.py`` prints it. "wrongly accepted" is
counted by the tests that check a final file against the lock after a fault: it must
stay 0, and each such test also asserts it.
"""

from __future__ import annotations

from collections import Counter

ROWS = (
    (
        "faults",
        "faults injected (drops, 5xx, 429, slow bodies, wrong bytes, bad redirects, ENOSPC)",
    ),
    ("kills", "kill -9 of a running sync or bundle survived"),
    ("bad_inputs", "bad inputs tried (manifests, lockfiles, paths, tokens)"),
    ("hostile", "hostile server values and planted files (Locations, tokens, realms, FIFOs)"),
    ("checked", "final files checked against the lock after a fault"),
    ("wrongly_accepted", "files wrongly accepted (must be 0)"),
)


class Report:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, what: str, n: int = 1) -> None:
        assert what in dict(ROWS), what
        self.counts[what] += n

    def lines(self) -> list[str]:
        width = max(len(label) for _, label in ROWS)
        return [f"  {label:<{width}}  {self.counts[key]:>6}" for key, label in ROWS]


REPORT = Report()
