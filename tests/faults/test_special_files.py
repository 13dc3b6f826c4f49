"""Special files planted where modelctl reads: a FIFO or /dev/zero (through a symlink) as
the manifest, the lockfile, a verification record or a locked file.

Before: a FIFO hung status/verify/sync/open_lock() (the open blocks until a writer comes)
and /dev/zero hashed forever or raised MemoryError. Now each gives one clear error or is
treated as absent/invalid. Every command runs in its own process with a timeout, so a hang
fails the test instead of the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modelctl.errors import LockfileError
from modelctl.fs.safeio import NotRegularFile, TooLarge, read_bounded
from modelctl.runtime import open_lock
from modelctl.store.layout import HfCacheStore, TargetStore
from tests.support.fault_report import REPORT
from tests.support.helpers import (
    Project,
    audit,
    cli_env,
    cli_in_process,
    make_project,
    seeded_bytes,
)

pytestmark = pytest.mark.faults

TIMEOUT_S = 60.0  # a hang fails here; a run takes ~1 s
MANIFEST = """\
assets:
  m:
    repo: org/s
    files: [weights.bin, empty.txt, config.json]
"""
REPOS = {
    "org/s": {
        "weights.bin": seeded_bytes(61, 300_000),
        "empty.txt": b"",
        "config.json": b'{"a": 1}',
    }
}


@pytest.fixture
def project(tmp_path: Path, hf_env: Path, hub_root: Path) -> Project:
    return make_project(tmp_path / "proj", hub_root, REPOS, MANIFEST)


def modelctl(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(Path(os.environ["HF_HOME"]))
    REPORT.add("bad_inputs")
    try:
        return subprocess.run(
            [sys.executable, "-m", "modelctl", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"modelctl {' '.join(args)} hung (> {TIMEOUT_S} s)") from exc


def fifo(path: Path) -> Path:
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


def dev_zero(path: Path) -> Path:
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/zero")
    return path


PLANT = {"fifo": fifo, "dev-zero": dev_zero}


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("how", sorted(PLANT))
def test_special_manifest_is_a_clear_input_error(
    tmp_path: Path, project: Project, how: str
) -> None:
    PLANT[how](project.manifest)
    proc = modelctl(tmp_path, "lock", "-m", str(project.manifest))
    no_traceback(proc)
    assert proc.returncode == 2, proc.stderr
    assert "not a regular file" in proc.stderr


@pytest.mark.parametrize("how", sorted(PLANT))
@pytest.mark.parametrize("command", ["sync", "verify", "status"])
def test_special_lockfile_is_a_clear_input_error(
    tmp_path: Path, project: Project, how: str, command: str
) -> None:
    PLANT[how](project.lock_path)
    extra = ("--frozen",) if command == "sync" else ()
    proc = modelctl(tmp_path, command, *extra, "--lockfile", str(project.lock_path))
    no_traceback(proc)
    assert proc.returncode == 2, proc.stderr
    assert "not a regular file" in proc.stderr


@pytest.mark.parametrize("how", sorted(PLANT))
def test_open_lock_refuses_a_special_lockfile(project: Project, how: str) -> None:
    REPORT.add("bad_inputs")
    PLANT[how](project.lock_path)
    with pytest.raises(LockfileError, match="not a regular file"):
        open_lock(project.lock_path)


@pytest.mark.parametrize("how", sorted(PLANT))
@pytest.mark.parametrize("layout", ["target", "hf-cache"])
def test_special_record_is_treated_as_absent(
    tmp_path: Path, project: Project, how: str, layout: str
) -> None:
    target = tmp_path / "out"
    where = ("--target", str(target)) if layout == "target" else ()
    lock = ("--lockfile", str(project.lock_path))
    assert modelctl(tmp_path, "sync", "-q", "--frozen", *lock, *where).returncode == 0
    store = (
        TargetStore(target)
        if layout == "target"
        else HfCacheStore(Path(os.environ["HF_HOME"]) / "hub")
    )
    for ref in project.refs():
        PLANT[how](store.record_path(ref))
    if layout == "target" and how == "dev-zero":
        # No symlink is accepted inside a --target tree (tests/faults/test_target_symlinks).
        proc = modelctl(tmp_path, "verify", *lock, *where)
        no_traceback(proc)
        assert proc.returncode == 2 and "symlink" in proc.stderr, proc.stderr
        return
    for command in ("verify",):
        proc = modelctl(tmp_path, command, *lock, *where)
        no_traceback(proc)
        # A record is only a cache: without one, verify hashes the file again.
        assert proc.returncode == 0, proc.stderr
    proc = modelctl(tmp_path, "sync", "-q", "--frozen", *lock, *where)
    assert proc.returncode == 0, proc.stderr
    audit(project.lock(), store, context=f"{how} record")


@pytest.mark.parametrize(
    ("layout", "how"), [("target", "fifo"), ("hf-cache", "fifo"), ("hf-cache", "dev-zero")]
)
@pytest.mark.parametrize("name", ["empty.txt", "weights.bin"])
def test_special_locked_file_is_refused_then_replaced(
    tmp_path: Path, project: Project, layout: str, how: str, name: str
) -> None:
    """A FIFO or /dev/zero where a locked file's content is (the HF cache's blob; in a
    --target tree only a FIFO: a symlink there is refused as such)."""
    target = tmp_path / "out"
    where = ("--target", str(target)) if layout == "target" else ()
    lock = ("--lockfile", str(project.lock_path))
    assert modelctl(tmp_path, "sync", "-q", "--frozen", *lock, *where).returncode == 0
    store = (
        TargetStore(target)
        if layout == "target"
        else HfCacheStore(Path(os.environ["HF_HOME"]) / "hub")
    )
    ref = project.ref(name)
    store.record_path(ref).unlink()
    PLANT[how](store.content_path(ref))
    for args in (("verify",),):
        proc = modelctl(tmp_path, *args, *lock, *where)
        no_traceback(proc)
        assert proc.returncode == 1, (args, proc.stderr)  # files differ from the lock
    proc = modelctl(tmp_path, "status", *lock, *where)
    no_traceback(proc)
    assert proc.returncode == 0 and "wrong-size" in proc.stdout, proc.stdout + proc.stderr
    proc = modelctl(tmp_path, "sync", "-q", "--frozen", *lock, *where)
    no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    assert store.final_path(ref).read_bytes() == project.data(ref)
    audit(project.lock(), store, context=f"{how} as {name}")


def test_read_bounded_refuses_what_is_no_small_regular_file(tmp_path: Path) -> None:
    with pytest.raises(NotRegularFile, match="FIFO"):
        read_bounded(fifo(tmp_path / "f"))
    with pytest.raises(NotRegularFile, match="character device"):
        read_bounded(dev_zero(tmp_path / "z"))
    with pytest.raises(NotRegularFile, match="folder"):
        read_bounded(tmp_path)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    with pytest.raises(TooLarge):
        read_bounded(big, 100)
    assert read_bounded(big, 101) == b"x" * 101
    with pytest.raises(OSError):
        read_bounded(dev_zero(tmp_path / "z2"), follow=False)


@pytest.fixture
def read_only_view(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    """A read-only bind mount of a folder (a mounted volume, an image layer)."""
    mounts: list[Path] = []

    def view(src: Path) -> Path:
        dst = tmp_path / f"ro-{len(mounts)}"
        dst.mkdir()
        for cmd in (
            ["mount", "--bind", str(src), str(dst)],
            ["mount", "-o", "remount,ro,bind", str(dst)],
        ):
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                if cmd[1] == "--bind":
                    dst.rmdir()
                else:
                    mounts.append(dst)
                pytest.skip(f"cannot make a read-only mount here: {done.stderr.strip()}")
        mounts.append(dst)
        return dst

    yield view
    for dst in reversed(mounts):
        subprocess.run(["umount", str(dst)], check=False)


@pytest.mark.parametrize("layout", ["target", "hf-cache"])
def test_verify_on_a_read_only_store_with_a_record_missing_succeeds(
    tmp_path: Path,
    project: Project,
    read_only_view: Callable[[Path], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    layout: str,
) -> None:
    """Records are an optimisation: verify hashes the file and cannot write its record."""
    target = tmp_path / "out"
    hf_cache = Path(os.environ["HF_HOME"]) / "hub"
    where = ("--target", str(target)) if layout == "target" else ()
    lock = ("--lockfile", str(project.lock_path))
    code, _, err = cli_in_process(capsys, "sync", "-q", "--frozen", *lock, *where)
    assert code == 0, err
    store = TargetStore(target) if layout == "target" else HfCacheStore(hf_cache)
    store.record_path(project.ref("weights.bin")).unlink()
    if layout == "target":
        where = ("--target", str(read_only_view(target)))
    else:
        monkeypatch.setenv("HF_HUB_CACHE", str(read_only_view(hf_cache)))
    REPORT.add("bad_inputs")
    for args in (("verify",), ("verify", "--full"), ("status",)):
        code, out, err = cli_in_process(capsys, *args, *lock, *where)
        assert code == 0, err
        assert "Traceback" not in out + err
