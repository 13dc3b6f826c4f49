"""Human-readable rendering helpers for the CLI."""

from __future__ import annotations

from collections.abc import Sequence

from modelctl.cli.echo import echo
from modelctl.lock.plan import DownloadPlan


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # unreachable: the loop returns at TiB


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def fmt(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [fmt(headers), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def plan_table(plan: DownloadPlan) -> list[str]:
    rows = [
        (f.asset, f.filename, human_bytes(f.size_bytes), "yes" if f.cached else "no")
        for f in plan.files
    ]
    lines = table(("asset", "file", "size", "cached"), rows, right={2})
    lines.append("")
    lines.append(
        f"{len(plan.files)} files, total {human_bytes(plan.total_bytes)}, "
        f"cached {human_bytes(plan.cached_bytes)}, "
        f"to download {human_bytes(plan.download_bytes())}"
    )
    if plan.unknown_sizes:
        lines.append(
            f"note: {plan.unknown_sizes} file(s) of unknown size (the Hub did not report it); "
            "totals count known sizes only"
        )
    return lines


def tell_wait(text: str) -> None:
    """A retry's wait, on stderr: a lock waiting minutes for a rate limit must say so."""
    echo(f"note: {text}", err=True)
