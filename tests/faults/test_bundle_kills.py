"""kill -9 of `modelctl bundle` while it writes: no pile of temp files.

Before, each killed run left its own `.OUT.<random>.tmp` beside OUT, and nothing removed
them. Now the temp name is one per OUT (`.OUT.modelctl-partial`): the next run takes it
over, and a bundle that completes leaves none.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from modelctl.bundle.archive import INDEX_MEMBER, LOCK_MEMBER
from tests.support.fault_report import REPORT
from tests.support.helpers import MiB, cli_env, cli_in_process, make_project, seeded_bytes

pytestmark = pytest.mark.faults

SEED = 0x5EED_0011
ROUNDS = 4
MANIFEST = 'assets:\n  b:\n    repo: org/bk\n    files: ["*.bin"]\n'
REPO = {f"w{i}.bin": seeded_bytes(80 + i, 24 * MiB) for i in range(3)}


def _temps(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith("."))


def test_killed_bundles_leave_at_most_one_temp_file(
    tmp_path: Path, hf_env: Path, hub_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(SEED)
    project = make_project(tmp_path / "p", hub_root, {"org/bk": REPO}, MANIFEST)
    lock = ("--lockfile", str(project.lock_path))
    code, _, err = cli_in_process(capsys, "sync", "-q", "--frozen", *lock)
    assert code == 0, err
    out_dir = tmp_path / "bundles"
    out_dir.mkdir()
    out = out_dir / "models.tar"
    env = cli_env(hf_env.parent)
    kills = 0
    for _ in range(ROUNDS):
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelctl", "bundle", str(out), *lock],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not _temps(out_dir) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.05))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait()
        assert len(_temps(out_dir)) <= 1, _temps(out_dir)
        assert not out.exists() or out.stat().st_size > 72 * MiB  # OUT complete or absent
    REPORT.add("kills", kills)
    assert kills >= 1
    code, _, err = cli_in_process(capsys, "bundle", str(out), *lock)
    assert code == 0, err
    assert _temps(out_dir) == []
    with tarfile.open(out) as tar:
        assert tar.getnames()[:2] == [LOCK_MEMBER, INDEX_MEMBER]
    code, _, err = cli_in_process(
        capsys,
        "sync",
        "-q",
        "-m",
        str(project.manifest),
        "--from-bundle",
        str(out),
        "--target",
        str(tmp_path / "t"),
    )
    assert code == 0, err
