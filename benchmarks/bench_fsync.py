"""What durability costs: a verified download's commit with and without fsync.

Each file goes through :class:`modelctl.store.partial.PartialFile` as sync writes it (create,
hash + write, verify, fsync the file, rename, fsync the folder, record). The "no fsync"
runs replace the two fsync calls with nothing, so the difference is exactly what the
durability promise costs. Two shapes: one large file (the fsync waits for its dirty
pages to reach the disk) and many small files (one fsync pair per file).

Run ``python -m benchmarks.bench_fsync [--dir DIR] [--rounds 3]``; DIR should be on the
disk the cache lives on (default: a temp folder under the current folder).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from modelctl.lock.digest import Digest
from modelctl.store import partial
from modelctl.store.partial import PartialFile

MiB = 1024 * 1024
SHAPES = {"1 x 256 MiB": (1, 256 * MiB), "500 x 16 KiB": (500, 16 * 1024)}


def write_files(folder: Path, count: int, size: int) -> float:
    data = os.urandom(size)
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    began = time.perf_counter()
    for i in range(count):
        part = PartialFile.create(folder / f".f{i}.modelctl-partial", digest, size)
        for off in range(0, size, 8 * MiB):
            part.append(data[off : off + 8 * MiB])
        part.commit(folder / f"f{i}", folder / ".records" / f"f{i}.json")
    return time.perf_counter() - began


def run(base: Path, count: int, size: int, durable: bool) -> float:
    saved: tuple[Callable[[int], None], Callable[[Path], None]] = (
        partial.fsync_file,
        partial.fsync_dir,
    )
    if not durable:
        partial.fsync_file = lambda fd: None  # type: ignore[assignment]
        partial.fsync_dir = lambda folder: None  # type: ignore[assignment]
    folder = Path(tempfile.mkdtemp(dir=base))
    try:
        return write_files(folder, count, size)
    finally:
        partial.fsync_file, partial.fsync_dir = saved  # type: ignore[assignment]
        shutil.rmtree(folder)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", type=Path, default=Path.cwd())
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".bench-fsync-") as tmp:
        base = Path(tmp)
        for name, (count, size) in SHAPES.items():
            times: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(args.rounds):
                for durable in (False, True):
                    times[durable].append(run(base, count, size, durable))
            plain = statistics.median(times[False])
            durable_s = statistics.median(times[True])
            print(
                f"{name:>14}: no fsync {plain:6.3f} s, fsync {durable_s:6.3f} s "
                f"(+{durable_s - plain:.3f} s, x{durable_s / plain:.2f}; "
                f"median of {args.rounds})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
