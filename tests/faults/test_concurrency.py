"""Concurrent `modelctl sync` processes on one store: all succeed, each file is fetched
once (GETs counted in the server log), and when the process holding a file's lock is
killed, another one takes the file over from its partial download."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from modelctl.cli import main
from modelctl.store.layout import HfCacheStore, Store, TargetStore
from modelctl.testing.hub import LocalHub
from tests.support.fault_report import REPORT
from tests.support.helpers import (
    MiB,
    Project,
    audit,
    clear,
    cli_env,
    make_project,
    range_start,
    resolve_gets,
    seeded_bytes,
    spawn_sync,
    stray_temp_files,
)

pytestmark = pytest.mark.faults

MANIFEST = """\
assets:
  big:
    repo: org/c
    files: [weights.safetensors, extra.bin, config.json, "notes/*.txt"]
  llm:
    kind: gguf
    repo: org/g
    file: m.gguf
    tokenizer: null
  same:
    repo: org/c
    files: [config.json]
"""
REPOS = {
    "org/c": {
        "weights.safetensors": seeded_bytes(31, 3 * MiB),
        "extra.bin": seeded_bytes(32, 2 * MiB),
        "config.json": b'{"a": 1}',
        "notes/a.txt": b"a",
        "notes/b.txt": b"bb",
    },
    "org/g": {"m.gguf": seeded_bytes(33, 3 * MiB // 2)},
}
SLOW = {"weights.safetensors", "extra.bin", "m.gguf"}


@pytest.fixture
def project(tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub) -> Project:
    p = make_project(tmp_path / "proj", hub_root, REPOS, MANIFEST)
    clear(local_hub)
    return p


def run_together(
    project: Project, env: dict[str, str], extra: tuple[str, ...], n: int
) -> list[subprocess.Popen[bytes]]:
    procs = [spawn_sync(project, env, *extra, as_json=True) for _ in range(n)]
    time.sleep(0.2)
    assert all(p.poll() is None for p in procs), "the syncs did not overlap"
    return procs


def one_get_per_file(project: Project, local_hub: LocalHub, store: Store) -> None:
    """One whole-file GET for each file the store holds: the HF cache holds a content once
    (assets "big" and "same" share config.json's blob), a --target tree once per asset."""
    for ref in {(r.repo_id, r.path): r for r in project.refs()}.values():
        copies = sum(1 for r in project.refs() if (r.repo_id, r.path) == (ref.repo_id, ref.path))
        want = 1 if isinstance(store, HfCacheStore) else copies
        gets = resolve_gets(local_hub, ref)
        assert [g.range for g in gets] == [None] * want, f"{ref.path}: {gets}"


@pytest.mark.parametrize("where", ["cache", "target"])
def test_four_concurrent_syncs_fetch_each_file_once(
    project: Project,
    local_hub: LocalHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    store: Store
    extra: tuple[str, ...] = ()
    if where == "cache":
        store = HfCacheStore(tmp_path / "hf" / "hub")
    else:
        store = TargetStore(tmp_path / "models")
        extra = ("--target", str(store.root))
    # Throttled, so that the four really run at the same time and wait for each other.
    local_hub.faults.set(slow_bytes_per_sec=4 * MiB, paths=SLOW)
    procs = run_together(project, cli_env(tmp_path / "hf"), extra, 4)
    planned_big = transferred = 0
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
        events = [json.loads(line) for line in out.decode().splitlines()]
        plan, finished = events[0], events[-1]
        assert (plan["event"], finished["event"]) == ("plan", "finished")
        planned_big += any(
            f["filename"] == "weights.safetensors" and not f["cached"] for f in plan["files"]
        )
        transferred += finished["bytes_transferred"]
    # Real contention: several processes set out to download the big file (it was not
    # there when they looked), yet every byte crossed the network once in all.
    assert planned_big >= 2, planned_big
    contents = {store.content_path(r): len(project.data(r)) for r in project.refs()}
    assert transferred == sum(contents.values())
    one_get_per_file(project, local_hub, store)
    REPORT.add("faults", 3)  # three processes raced for every file
    assert audit(project.lock(), store).checked == len(project.refs())
    assert stray_temp_files(store.root) == []
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # where the four synced
    assert main(["verify", "--full", "--lockfile", str(project.lock_path), *extra]) == 0


def holders(pids: list[int], partials: list[Path]) -> dict[int, Path]:
    """Which process has which partial download open (from /proc/<pid>/fd)."""
    found: dict[int, Path] = {}
    wanted = {str(p) for p in partials}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target in wanted:
                found[pid] = Path(target)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_killing_the_process_that_holds_a_file_lets_another_resume_it(
    project: Project, local_hub: LocalHub, tmp_path: Path
) -> None:
    store = HfCacheStore(tmp_path / "hf" / "hub")
    local_hub.faults.set(slow_bytes_per_sec=2 * MiB, paths=SLOW)
    procs = run_together(project, cli_env(tmp_path / "hf"), (), 3)
    big = project.ref("weights.safetensors")
    partial = store.partial_path(big)
    deadline = time.monotonic() + 20
    while True:
        found = holders([p.pid for p in procs], [partial])
        if found and partial.exists() and partial.stat().st_size > 256 * 1024:
            break
        assert time.monotonic() < deadline, "no process started the big file"
        time.sleep(0.01)
    (victim,) = found
    for p in procs:
        if p.pid == victim:
            p.kill()
            p.communicate()
    REPORT.add("kills")
    have = partial.stat().st_size
    for p in procs:
        if p.pid != victim:
            _, err = p.communicate(timeout=60)
            assert p.returncode == 0, err.decode()
    ranges = [g.range for g in resolve_gets(local_hub, big)]
    assert ranges[0] is None and len(ranges) == 2, ranges
    assert 0 < range_start(resolve_gets(local_hub, big)[1]) <= have, (ranges, have)
    assert audit(project.lock(), store).checked == len(project.refs())
    assert stray_temp_files(store.root) == []
