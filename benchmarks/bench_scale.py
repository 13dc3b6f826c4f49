"""Many small files: does the cost per file stay flat? (part of ``just bench``)

Repos of N files of 4 KiB each (default N = 1,000 and 10,000) on the bundled Hub server
(``python -m modelctl.testing.hub``, loopback). For each N, each step a fresh process as
a user runs it, its wall time and peak RSS:

- ``modelctl lock`` (a manifest naming the files with one glob), ``plan``, a cold
  ``sync`` (empty cache), ``status`` and ``verify`` of the synced cache;
- ``snapshot_download`` of the same files at the locked commit into an empty cache.

The cost per file (ms) of each step should not grow with N (no O(n^2)); a cold sync of
small files should beat ``snapshot_download``.

Run ``python -m benchmarks.bench_scale [--quick]`` (--quick: 200 and 1,000 files).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
from pathlib import Path

from benchmarks.bench_sync import REPO, env_for, start_hub
from benchmarks.bench_wan import Run, modelctl_cmd, run

FILE_BYTES = 4096

SNAPSHOT_SCRIPT = textwrap.dedent(
    """
    import sys
    import huggingface_hub as hf
    repo, commit, endpoint, cache = sys.argv[1:5]
    hf.snapshot_download(repo, revision=commit, cache_dir=cache, endpoint=endpoint,
                         allow_patterns=["*.txt"])
    """
)


def make_small_repo(root: Path, n: int) -> None:
    """``n`` files of 4 KiB (distinct bytes), 1,000 to a folder."""
    base = root / REPO / "main"
    for i in range(n):
        path = base / f"d{i // 1000:03d}" / f"f{i:06d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(i.to_bytes(8, "big") * (FILE_BYTES // 8))


def one_size(work: Path, n: int) -> dict[str, Run]:
    make_small_repo(work / "root", n)
    hub, url = start_hub(work / "root")
    try:
        manifest = work / "modelctl.yaml"
        manifest.write_text(f'assets:\n  many:\n    repo: {REPO}\n    files: ["*.txt"]\n')
        lock = str(manifest.with_suffix(".lock"))
        env = env_for(url, work / "hf")
        steps: dict[str, Run] = {}
        steps["lock"] = run(modelctl_cmd("-q", "lock", "-m", str(manifest)), env)
        m = str(manifest)
        steps["plan"] = run(modelctl_cmd("plan", "-m", m), env)
        steps["sync (cold)"] = run(modelctl_cmd("sync", "--frozen", "-q", "-m", m), env)
        steps["status (warm)"] = run(modelctl_cmd("status", "-m", m), env)
        steps["verify"] = run(modelctl_cmd("verify", "-m", m), env)
        from modelctl.lock import lockfile

        commit = next(iter(lockfile.load(Path(lock)).files())).commit
        snap_env = env_for(url, work / "hf-snap")
        snap = [sys.executable, "-c", SNAPSHOT_SCRIPT, REPO, commit, url, str(work / "snap")]
        steps["snapshot_download (cold)"] = run(snap, snap_env)
        files = len(list(lockfile.load(Path(lock)).files()))
        assert files == n, f"locked {files} files, expected {n}"
    finally:
        hub.terminate()
        hub.wait(timeout=10)
    return steps


def table(work: Path, quick: bool = False) -> list[str]:
    sizes = (200, 1000) if quick else (1000, 10_000)
    results = {n: one_size(work / f"n{n}", n) for n in sizes}
    small, large = sizes
    lines = [
        f"many small files ({FILE_BYTES // 1024} KiB each), bundled Hub server, one run each:",
        "",
        f"| {'step':<26} | "
        + " | ".join(f"{n:>6} files: s, ms/file, peak RSS" for n in sizes)
        + " | per-file cost, large/small |",
        "|" + "|".join("-" * w for w in (28, *(39,) * len(sizes), 29)) + "|",
    ]
    for step in results[small]:
        cells = []
        for n in sizes:
            r = results[n][step]
            cells.append(
                f"{r.wall_s:>8.2f} s {r.wall_s / n * 1000:>6.2f} {r.rss_kib / 1024:>6.0f} MiB"
            )
        flat = (results[large][step].wall_s / large) / (results[small][step].wall_s / small)
        lines.append(
            f"| {step:<26} | " + " | ".join(f"{c:>37}" for c in cells) + f" | {flat:>26.2f}x |"
        )
    lines.append("")
    for n in sizes:
        mine = results[n]["sync (cold)"].wall_s
        theirs = results[n]["snapshot_download (cold)"].wall_s
        ok = "met" if mine < theirs else "NOT met"
        lines.append(
            f"goal {n} small files: cold sync beats snapshot_download: "
            f"{theirs / mine:.2f}x faster ({ok})"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_scale", description=__doc__.splitlines()[0]
    )
    p.add_argument("--quick", action="store_true", help="200 and 1,000 files")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modelctl-scale-") as tmp:
        sys.stdout.write("\n".join(table(Path(tmp), args.quick)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
