"""A full disk: exit 5 with a clear message, no partial file at a final path, and the
next run (with space again) resumes, verifies and leaves no temporary file behind.

The disk is a real 8 MiB tmpfs (we run as root in CI; the test mounts it) filled so that
a seeded random amount of space is left: ENOSPC lands in a download, a record, a link or
the refs file. Where mounting is refused, the ``injected`` variant still runs: there the
downloads' writes fail with ENOSPC after a random number of bytes.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelctl.store import partial
from modelctl.store.layout import HfCacheStore, Store, TargetStore
from modelctl.testing.hub import LocalHub
from tests.support.fault_report import REPORT
from tests.support.helpers import (
    MiB,
    Project,
    audit,
    clear,
    cli_in_process,
    make_project,
    partials_are_prefixes,
    resolve_gets,
    seeded_bytes,
    stray_temp_files,
)

pytestmark = pytest.mark.faults

SEED = 0x5EED_0003
DISK = 8 * MiB
PAGE = 4096  # tmpfs allocates whole pages
MANIFEST = """\
assets:
  big:
    repo: org/d
    files: [weights.safetensors, extra.bin, config.json, "notes/*.txt"]
  llm:
    kind: gguf
    repo: org/e
    file: m.gguf
    tokenizer: null
"""
REPOS = {
    "org/d": {
        "weights.safetensors": seeded_bytes(21, 3 * MiB),
        "extra.bin": seeded_bytes(22, 2 * MiB),
        "config.json": b'{"a": 1}',
        "notes/a.txt": b"a",
        "notes/b.txt": b"bb",
    },
    "org/e": {"m.gguf": seeded_bytes(23, 3 * MiB // 2)},
}
TOTAL = sum(len(d) for files in REPOS.values() for d in files.values())


def mount_tmpfs(path: Path, size: int) -> str | None:
    """Mount a tmpfs of ``size`` bytes at ``path``; the reason if that is refused."""
    path.mkdir(parents=True)
    if os.geteuid() != 0:
        return "not root"
    try:
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return r.stderr.strip() or f"mount exit {r.returncode}" if r.returncode else None


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    refused = mount_tmpfs(disk, DISK)
    if refused is not None:
        pytest.skip(f"cannot mount a tmpfs ({refused}); the injected variant covers ENOSPC")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False, timeout=10)


def leave_free(disk: Path, free: int) -> Path:
    """Fill the disk so that about ``free`` bytes are left."""
    fill = disk / "fill"
    st = os.statvfs(disk)
    size = max(0, st.f_bavail * st.f_frsize - free)
    with fill.open("wb") as f:
        f.write(b"\0" * size)
    return fill


def layout(cache: bool, base: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Store, list[str]]:
    """The HF cache in ``base``, or a --target tree there."""
    if cache:
        monkeypatch.setenv("HF_HUB_CACHE", str(base / "hub"))
        return HfCacheStore(base / "hub"), []
    return TargetStore(base / "models"), ["--target", str(base / "models")]


def check_full_disk_failure(
    project: Project, store: Store, code: int, err: str, ctx: str
) -> dict[str, int]:
    """Exit 5 and a clear message; nothing wrong at a final path; partials are prefixes."""
    assert code == 5, f"{ctx}\n{err}"
    assert "storage error" in err and "No space left on device" in err, f"{ctx}\n{err}"
    assert "free some disk space" in err and "Traceback" not in err, f"{ctx}\n{err}"
    REPORT.add("faults", 1 + err.count("  - also: "))
    audit(project.lock(), store, context=ctx)
    partials_are_prefixes(project, store, project.refs())
    sizes = {}
    for ref in project.refs():
        partial = store.partial_path(ref)
        if partial.exists():
            sizes[ref.path] = partial.stat().st_size
    return sizes


def check_next_run_completes(
    project: Project,
    store: Store,
    args: list[str],
    partials: dict[str, int],
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
    ctx: str,
) -> None:
    clear(local_hub)
    lock = ["--lockfile", str(project.lock_path), *args]
    code, _, err = cli_in_process(capsys, "sync", "--frozen", *lock)
    assert code == 0, f"{ctx}\n{err}"
    for path, have in partials.items():
        ranges = [g.range for g in resolve_gets(local_hub, project.ref(path))]
        assert ranges[:1] == ([f"bytes={have}-"] if have else [None]), f"{ctx} {path}"
    code, _, err = cli_in_process(capsys, "verify", "--full", *lock)
    assert code == 0, f"{ctx}\n{err}"
    assert audit(project.lock(), store, context=ctx).checked == len(project.refs())
    assert stray_temp_files(store.root) == [], ctx  # temporary files are gone


@pytest.fixture
def project(tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub) -> Project:
    p = make_project(tmp_path / "proj", hub_root, REPOS, MANIFEST)
    clear(local_hub)
    return p


def pages(n: int) -> int:
    return -(-n // PAGE) * PAGE


def full_disk_cases(rng: random.Random) -> list[tuple[bool, int, list[str], str]]:
    """(HF cache?, bytes left free, extra sync arguments, what should fail) per round.

    In parallel, the downloads compete for the space: one of them hits ENOSPC. One at a
    time (-j 1, largest first), exactly the pages of the first k files (plus their
    records, a page each on tmpfs) make the next write fail: a record after a rename, or
    the HF cache's refs/main after every file.
    """
    sizes = sorted((len(d) for f in REPOS.values() for d in f.values()), reverse=True)
    done = [sum(pages(n) + PAGE for n in sizes[:k]) for k in range(len(sizes) + 1)]
    k = rng.randrange(1, 3)
    return [
        (True, 0, [], "cannot write the download"),
        (False, rng.randrange(0, TOTAL - 64 * 1024, PAGE), [], "cannot write the download"),
        (True, rng.randrange(0, TOTAL - 64 * 1024, PAGE), [], "cannot write the download"),
        (False, done[k] - PAGE, ["-j", "1"], "cannot write a verification record"),  # k+1's
        (True, done[k] - PAGE, ["-j", "1"], "cannot write a verification record"),
        (True, done[-1], ["-j", "1"], "cannot write main"),  # every file fits, refs/main not
    ]


def test_full_tmpfs_exit_5_then_resume(
    project: Project,
    small_disk: Path,
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(SEED)
    for i, (cache, free, jobs, failing) in enumerate(full_disk_cases(rng)):
        ctx = f"seed={SEED} round={i} cache={cache} free={free} {jobs} (expect: {failing})"
        base = small_disk / f"r{i}"
        store, args = layout(cache, base, monkeypatch)
        fill = leave_free(small_disk, free)
        code, _, err = cli_in_process(
            capsys, "sync", "--frozen", "--lockfile", str(project.lock_path), *args, *jobs
        )
        first = err[err.index("storage error") :].splitlines()[0] if code else ""
        assert failing in first, f"{ctx}\n{err}"
        partials = check_full_disk_failure(project, store, code, err, ctx)
        fill.unlink()
        check_next_run_completes(project, store, args, partials, local_hub, capsys, ctx)
        shutil.rmtree(base)


class FullDiskOs:
    """``os`` as modelctl.store.partial (which writes every synced file) sees it, on a disk
    that fills up after ``budget`` bytes."""

    def __init__(self, budget: int) -> None:
        self.left = budget
        self.hits = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        with self._lock:
            allowed = min(len(data), self.left)
            if allowed <= 0:
                self.hits += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.left -= allowed
        return os.write(fd, data[:allowed])


def test_injected_enospc_exit_5_then_resume(
    project: Project,
    tmp_path: Path,
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(SEED + 1)
    for i in range(4):
        budget = rng.randrange(0, TOTAL - 64 * 1024)
        ctx = f"seed={SEED + 1} round={i} budget={budget}"
        store, args = layout(i % 2 == 0, tmp_path / f"inj{i}", monkeypatch)
        full = FullDiskOs(budget)
        with monkeypatch.context() as m:
            m.setattr(partial, "os", full)
            code, _, err = cli_in_process(
                capsys, "sync", "--frozen", "--lockfile", str(project.lock_path), *args
            )
        assert full.hits >= 1, ctx  # the disk really filled up
        partials = check_full_disk_failure(project, store, code, err, ctx)
        check_next_run_completes(project, store, args, partials, local_hub, capsys, ctx)
