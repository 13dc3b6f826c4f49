"""`gc --delete` next to a running sync, and gc among planted symlinks.

Before: with --target, gc removed folders a sync had just made (the sync failed, exit 5,
in 6 of 15 rounds); in the HF cache gc crashed (FileNotFoundError) when a temp file
vanished between its listing and its lstat; and `gc --delete --target` followed a
symlinked asset folder and deleted files outside the tree.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from modelctl.store.gc import collect, find_garbage
from modelctl.store.layout import HfCacheStore, Store, TargetStore
from modelctl.testing.hub import LocalHub
from tests.support.fault_report import REPORT
from tests.support.helpers import (
    Project,
    audit,
    cli_env,
    cli_in_process,
    make_project,
    seeded_bytes,
    spawn_sync,
    stray_temp_files,
)

pytestmark = pytest.mark.faults

SEED = 0x5EED_0010
ROUNDS = 4  # per layout
TIME_BUDGET_S = 40.0
MANIFEST = """\
assets:
  deep:
    repo: org/deep
    files: ["*"]
"""
# Many small files in many folders: each folder is made by the sync shortly before its
# first file is written, which is the moment gc used to remove it.
REPO = {
    f"d{i}/s{j}/f{k}.bin": seeded_bytes(1000 * i + 10 * j + k, 2048)
    for i in range(4)
    for j in range(3)
    for k in range(2)
}


@pytest.fixture
def project(tmp_path: Path, hf_env: Path, hub_root: Path) -> Project:
    return make_project(tmp_path / "proj", hub_root, {"org/deep": REPO}, MANIFEST)


def _store(layout: str, tmp_path: Path, hf_cache: Path) -> Store:
    return TargetStore(tmp_path / "out") if layout == "target" else HfCacheStore(hf_cache)


@pytest.mark.parametrize("layout", ["target", "hf-cache"])
def test_gc_next_to_a_running_sync_never_breaks_it(
    tmp_path: Path, project: Project, hf_env: Path, local_hub: LocalHub, layout: str
) -> None:
    rng = random.Random(SEED)
    store = _store(layout, tmp_path, hf_env)
    env = cli_env(hf_env.parent)
    lock = project.lock()
    began = time.monotonic()
    rounds = 0
    while rounds < ROUNDS and time.monotonic() - began < TIME_BUDGET_S:
        rounds += 1
        # Start each round from nothing, so the sync makes every folder again.
        for ref in project.refs():
            store.final_path(ref).unlink(missing_ok=True)
            store.record_path(ref).unlink(missing_ok=True)
        local_hub.faults.set(slow_bytes_per_sec=rng.choice([200_000, 400_000, 800_000]))
        extra = ("--target", str(tmp_path / "out")) if layout == "target" else ()
        proc = spawn_sync(project, env, *extra, "--jobs", str(rng.choice([1, 2, 4])))
        gcs = 0
        while proc.poll() is None:
            # Partial and temp files older than 1 s are candidates: a partial download is
            # then protected only by its lock. (A temp file of an atomic write lives for
            # milliseconds and has no lock: the age is what keeps gc off it.)
            plan = find_garbage([lock], store, partial_age_s=1.0, now=time.time())
            collect(plan)
            gcs += 1
        _, err = proc.communicate()
        REPORT.add("faults")
        assert proc.returncode == 0, f"round {rounds} ({gcs} gc runs): {err.decode()}"
        audit(lock, store, context=f"{layout} round {rounds}")
        for path in REPO:
            ref = project.ref(path)
            assert store.final_path(ref).read_bytes() == project.data(ref)
    local_hub.faults.reset()
    assert rounds >= 2, f"only {rounds} rounds in {TIME_BUDGET_S} s"
    assert not stray_temp_files(tmp_path / "out")


def test_gc_never_deletes_through_a_symlink(
    tmp_path: Path, project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out"
    code, _, err = cli_in_process(
        capsys,
        "sync",
        "-q",
        "--frozen",
        "--lockfile",
        str(project.lock_path),
        "--target",
        str(target),
    )
    assert code == 0, err
    outside = tmp_path / "outside"
    (outside / "d0" / "s0").mkdir(parents=True)
    victims = [outside / "victim.txt", outside / "d0" / "s0" / "other.bin", outside / "x.json"]
    for v in victims:
        v.write_text("keep me")
    # 1. the locked asset folder is a symlink out of the tree;
    real = target / "deep"
    real.rename(tmp_path / "moved")
    real.symlink_to(outside, target_is_directory=True)
    # 2. a folder below an asset's records is a symlink out of the tree;
    records = target / ".modelctl" / "verified" / "deep" / "d1"
    (tmp_path / "moved-records").mkdir()
    records.rename(tmp_path / "moved-records" / "d1")
    records.symlink_to(outside, target_is_directory=True)
    # 3. and a folder no lock uses, linked out of the tree (--all-repos deletes the link).
    (target / "other").symlink_to(outside, target_is_directory=True)
    REPORT.add("bad_inputs", 3)
    for args in ((), ("--all-repos",)):
        code, out, err = cli_in_process(
            capsys,
            "gc",
            "--delete",
            "--lockfile",
            str(project.lock_path),
            "--target",
            str(target),
            *args,
        )
        assert code == 0, err
        assert "Traceback" not in out + err
        for v in victims:
            assert v.read_text() == "keep me", f"gc {args} deleted {v} outside the tree"
    assert real.is_symlink() and not (target / "other").exists()


def test_gc_refuses_a_symlinked_parent_between_listing_and_deleting(tmp_path: Path) -> None:
    """The folder of a listed item is swapped for a symlink after the listing: the
    deletion goes down from the root without following it, and skips the item."""
    from modelctl.store.gc import Garbage, GcPlan

    root = tmp_path / "tree"
    (root / "a" / "sub").mkdir(parents=True)
    (root / "a" / "sub" / "junk.bin").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "junk.bin").write_text("keep me")
    plan = GcPlan(root, "target", ("a",), (Garbage("file", root / "a" / "sub" / "junk.bin", 1),))
    (root / "a" / "sub").rename(tmp_path / "gone")
    (root / "a" / "sub").symlink_to(outside, target_is_directory=True)
    REPORT.add("bad_inputs")
    result = collect(plan)
    assert (outside / "junk.bin").read_text() == "keep me"
    assert not result.deleted and len(result.skipped) == 1
