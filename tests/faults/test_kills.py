"""kill -9 of `python -m modelctl sync` at seeded random moments, at least 50 times.

After every kill, every final file is checked against the lock (no final path ever holds
partial or wrong bytes) and every partial download must be a prefix of the real file.
Every round ends with a sync that completes (resuming what the killed runs left) and a
`verify --full` that passes. Two loops run at once, one on an HF cache and one on a
--target tree (each process spends most of its life starting Python: this halves the time).
"""

from __future__ import annotations

import concurrent.futures as cf
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

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
    partials_are_prefixes,
    seeded_bytes,
    settle,
    spawn_sync,
    stray_temp_files,
)

pytestmark = pytest.mark.faults

SEED = 0x5EED_0002
KILLS = 50
MAX_SPAWNS = 60  # per loop: bounds it even if kills keep missing
TIME_BUDGET_S = 90.0
MANIFEST = """\
assets:
  big:
    repo: org/k
    files: [weights.safetensors, extra.bin, config.json, tok.json, "notes/*.txt"]
  llm:
    kind: gguf
    repo: org/g
    file: m.gguf
    tokenizer: null
"""
REPOS = {
    "org/k": {
        "weights.safetensors": seeded_bytes(11, 3 * MiB),
        "extra.bin": seeded_bytes(12, 2 * MiB),
        "config.json": b'{"a": 1}',
        "tok.json": seeded_bytes(13, 64 * 1024),
        "notes/a.txt": b"a",
        "notes/b.txt": b"bb",
    },
    "org/g": {"m.gguf": seeded_bytes(14, 3 * MiB // 2)},
}
SLOW = {"weights.safetensors", "extra.bin", "m.gguf"}
RATE = 3 * MiB // 2  # per connection: a run moves about 1 MiB before its kill


def partial_sizes(project: Project, store: Store) -> dict[str, int]:
    sizes = {}
    for ref in project.refs():
        try:
            sizes[ref.path] = store.partial_path(ref).stat().st_size
        except FileNotFoundError:
            continue
    return sizes


def wait_for_transfer(
    project: Project, store: Store, proc: subprocess.Popen[bytes], timeout: float
) -> None:
    """Until a partial download of this run has grown (or the process ended)."""
    before = partial_sizes(project, store)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        now = partial_sizes(project, store)
        if any(size > before.get(path, 0) for path, size in now.items()):
            return
        time.sleep(0.005)


@dataclass
class Tally:
    kills: int = 0
    spawns: int = 0
    rounds: int = 0
    mid_transfer: int = 0  # kills after which a partial download held some but not all bytes
    finished_alone: int = 0  # runs that completed before their kill came
    # A kill inside the write of a record or refs file (temp file, then rename) leaves
    # that small temp file behind: never at a final path, and not a partial download.
    small_temp_files: int = 0


# REPORT is shared by both loops.
_checking = threading.Lock()


def kill_loop(
    layout: str,
    kills: int,
    project: Project,
    folder: Path,
    seed: int,
    started: float,
    stop: threading.Event,
) -> Tally:
    rng = random.Random(seed)
    tally = Tally()
    while tally.kills < kills and not stop.is_set():
        tally.rounds += 1
        hf_home = folder / f"hf-{tally.rounds}"
        env = {**cli_env(hf_home), "HF_HUB_CACHE": str(hf_home / "hub")}
        store: Store
        extra: tuple[str, ...] = ()
        if layout == "cache":
            store = HfCacheStore(hf_home / "hub")
        else:
            store = TargetStore(folder / f"target-{tally.rounds}")
            extra = ("--target", str(store.root))
        while tally.kills < kills and not stop.is_set():
            tally.spawns += 1
            ctx = f"seed={seed} {layout} round={tally.rounds} spawn={tally.spawns}"
            assert tally.spawns <= MAX_SPAWNS, f"{ctx}: too many spawns"
            assert time.monotonic() - started < TIME_BUDGET_S, f"{ctx}: out of time"
            proc = spawn_sync(project, env, *extra)
            if rng.random() < 0.25:
                # Anywhere from start-up through inspect, small files, renames and links.
                time.sleep(rng.uniform(0.0, 0.8))
            else:
                wait_for_transfer(project, store, proc, timeout=15)
                time.sleep(rng.uniform(0.0, 0.4))
            if proc.poll() is not None:
                _, err = proc.communicate()
                assert proc.returncode == 0, f"{ctx}: {err.decode()}"
                tally.finished_alone += 1
                break  # everything is synced: next round, fresh store
            proc.kill()  # SIGKILL: no cleanup of any kind
            proc.communicate()
            tally.kills += 1
            with _checking:
                REPORT.add("kills")
                audit(project.lock(), store, context=ctx)
            partials_are_prefixes(project, store, project.refs())
            sizes = partial_sizes(project, store)
            if any(0 < n < len(project.data(project.ref(p))) for p, n in sizes.items()):
                tally.mid_transfer += 1
        # The next sync completes (still throttled: it resumes) and verify --full passes.
        done = spawn_sync(project, env, *extra)
        _, err = done.communicate(timeout=60)
        ctx = f"seed={seed} {layout} round={tally.rounds}"
        assert done.returncode == 0, f"{ctx}: {err.decode()}"
        verify = subprocess.run(
            [
                sys.executable,
                "-m",
                "modelctl",
                "verify",
                "--full",
                "--lockfile",
                str(project.lock_path),
                *extra,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert verify.returncode == 0, f"{ctx}: {verify.stderr}"
        with _checking:
            assert audit(project.lock(), store, context=ctx).checked == len(project.refs())
        left = stray_temp_files(store.root)
        partial = [p for p in left if p.name.endswith((".incomplete", ".modelctl-partial"))]
        assert partial == [], ctx  # every partial download was resumed and completed
        tally.small_temp_files += len(left)
    return tally


def test_kill_9_at_random_moments_never_leaves_a_wrong_final_file(
    tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub
) -> None:
    project = make_project(tmp_path / "proj", hub_root, REPOS, MANIFEST)
    local_hub.faults.set(slow_bytes_per_sec=RATE, paths=SLOW)
    clear(local_hub)
    started = time.monotonic()
    loops = {"cache": KILLS // 2, "target": KILLS - KILLS // 2}
    stop = threading.Event()  # the first failure stops the other loop too
    with cf.ThreadPoolExecutor(max_workers=len(loops)) as pool:
        futures = {
            layout: pool.submit(
                kill_loop, layout, n, project, tmp_path / layout, SEED + i, started, stop
            )
            for i, (layout, n) in enumerate(loops.items())
        }
        done, _ = cf.wait(futures.values(), return_when=cf.FIRST_EXCEPTION)
        first = next((f for f in done if f.exception() is not None), None)
        if first is not None:
            stop.set()
            first.result()  # raises the first loop's failure
        tallies = {layout: f.result() for layout, f in futures.items()}
    resumed = sum(1 for r in settle(local_hub) if r.range is not None)
    kills = sum(t.kills for t in tallies.values())
    mid_transfer = sum(t.mid_transfer for t in tallies.values())
    print(f"\n{tallies} range-requests={resumed} in {time.monotonic() - started:.1f}s")
    assert kills >= KILLS
    # The kills really landed mid-transfer, and later runs really resumed.
    assert mid_transfer >= KILLS // 2, f"seed={SEED}: only {mid_transfer} kills mid-transfer"
    assert resumed >= KILLS // 2, f"seed={SEED}: only {resumed} resumed requests"


@pytest.mark.parametrize("layout", ["cache", "target"])
def test_a_partial_file_complete_at_the_kill_is_verified_not_downloaded_again(
    tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub, layout: str
) -> None:
    """Killed after the last byte was written but before the rename: the next run hashes
    the partial file and moves it into place without a request; a complete partial file
    with a wrong byte is downloaded again from zero."""
    from tests.support.helpers import lib_sync, resolve_gets

    project = make_project(tmp_path / "proj", hub_root, REPOS, MANIFEST)
    store: Store = (
        HfCacheStore(tmp_path / "hub") if layout == "cache" else TargetStore(tmp_path / "t")
    )
    good, bad = project.ref("extra.bin"), project.ref("m.gguf")
    for ref, flip in ((good, False), (bad, True)):
        data = bytearray(project.data(ref))
        if flip:
            data[len(data) // 3] ^= 0xFF
        store.partial_path(ref).parent.mkdir(parents=True, exist_ok=True)
        store.partial_path(ref).write_bytes(data)
    clear(local_hub)
    lib_sync(project, store)
    assert resolve_gets(local_hub, good) == []
    assert [g.range for g in resolve_gets(local_hub, bad)] == [None]
    REPORT.add("faults", 2)  # two crash states left behind (not kills: no process died)
    assert audit(project.lock(), store).checked == len(project.refs())
    assert stray_temp_files(store.root) == []
