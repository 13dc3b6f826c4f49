"""`modelctl sync` against the real local Hub server: layout, requests, faults, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import huggingface_hub as hf
import pytest

from modelctl.cli import main
from modelctl.errors import IntegrityError, NetworkError
from modelctl.hub.source import HubSource
from modelctl.lock import lockfile
from modelctl.lock.types import Lock
from modelctl.progress import (
    AggregateProgress,
    DownloadPlanReady,
    Event,
    FileDone,
    FileProgress,
    FileStarted,
    SyncFinished,
)
from modelctl.settings import from_env
from modelctl.store.layout import HfCacheStore, TargetStore
from modelctl.sync import sync
from modelctl.testing.hub import LocalHub
from modelctl.transfer.retry import RetryPolicy
from tests.support.helpers import seeded_bytes, write_repo

MiB = 1024 * 1024
BIG = 12 * MiB  # LFS by size (>= 10 MiB), like a real weights file
FAST = RetryPolicy(backoff_s=0.01, backoff_max_s=0.05, retry_after_max_s=0.2)

MANIFEST = """\
assets:
  alpha:
    repo: org/alpha
    files: [weights.bin, config.json, "*.txt"]
  beta:
    kind: gguf
    repo: org/beta
    file: small.gguf
    tokenizer: null
"""


@pytest.fixture
def repos(hub_root: Path) -> dict[str, dict[str, bytes]]:
    content = {
        "org/alpha": {
            "weights.bin": seeded_bytes(1, BIG),
            "config.json": b'{"hidden": 64}',
            "notes/a.txt": b"a",
            "b.txt": b"bee",
            "README.md": b"# not locked",
        },
        "org/beta": {"small.gguf": seeded_bytes(2, 300_000), "other.gguf": seeded_bytes(3, 10)},
    }
    for repo_id, files in content.items():
        write_repo(hub_root, repo_id, files, lfs_patterns=("*.gguf",))
    return content


@pytest.fixture
def project(
    tmp_path: Path, hf_env: Path, repos: dict[str, dict[str, bytes]], local_hub: LocalHub
) -> Path:
    """A locked project (the lock requests are cleared from the server's log)."""
    manifest = tmp_path / "proj" / "modelctl.yaml"
    manifest.parent.mkdir()
    manifest.write_text(MANIFEST)
    assert main(["lock", "-m", str(manifest)]) == 0
    clear(local_hub)
    return manifest


def settle(hub: LocalHub) -> None:
    """Wait until the server's request log stops growing.

    LocalHub appends a request to its log after the response is sent, so a client can be
    done before its last request is logged (see the report: a race in the test server).
    """
    seen = -1
    while len(hub.requests) != seen:
        seen = len(hub.requests)
        time.sleep(0.05)


def logged(hub: LocalHub) -> list[object]:
    settle(hub)
    return list(hub.requests)


def clear(hub: LocalHub) -> None:
    settle(hub)
    hub.clear_requests()


def load_lock(project: Path) -> Lock:
    return lockfile.load(project.with_suffix(".lock"))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def lib_sync(lock: Lock, *, jobs: int | None = None, **kwargs: object) -> object:
    settings = from_env(os.environ)
    store = kwargs.pop("store", None) or HfCacheStore(settings.hf_cache)
    source = HubSource(settings, jobs=jobs, policy=FAST)
    return sync(lock, store, source, jobs=jobs, **kwargs)  # type: ignore[arg-type]


def resolve_gets(hub: LocalHub, path: str) -> list[str | None]:
    """The Range header of every content GET of ``path``, in order."""
    settle(hub)
    return [
        r.range
        for r in hub.requests
        if r.method == "GET" and "/resolve/" in r.path and r.path.endswith("/" + path)
    ]


EXPECTED = {
    ("org/alpha", "weights.bin"),
    ("org/alpha", "config.json"),
    ("org/alpha", "notes/a.txt"),
    ("org/alpha", "b.txt"),
    ("org/beta", "small.gguf"),
}


# ------------------------------------------------------------------------------ cold / warm


def test_cold_sync_fills_the_hf_cache_that_other_tools_read(
    project: Path,
    hf_env: Path,
    repos: dict[str, dict[str, bytes]],
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "sync", "-m", str(project), "--locked")
    assert code == 0, err
    assert out.strip() == str(hf_env)
    assert "synced: 5 file(s) downloaded" in err and str(hf_env) in err
    lock = load_lock(project)
    assert {(r.repo_id, r.path) for r in lock.files()} == EXPECTED
    for ref in lock.files():
        repo_dir = hf_env / ("models--" + ref.repo_id.replace("/", "--"))
        final = repo_dir / "snapshots" / ref.commit / ref.path
        assert final.is_symlink()
        assert not os.path.isabs(os.readlink(final))
        assert final.resolve() == (repo_dir / "blobs" / ref.digest.hex).resolve()
        assert final.read_bytes() == repos[ref.repo_id][ref.path]
        assert (repo_dir / "refs" / "main").read_text() == ref.commit
        # Other tools find the files with zero requests.
        found = hf.hf_hub_download(
            ref.repo_id, ref.path, revision=ref.commit, cache_dir=hf_env, local_files_only=True
        )
        assert Path(found).read_bytes() == repos[ref.repo_id][ref.path]
    found = hf.hf_hub_download("org/alpha", "config.json", cache_dir=hf_env, local_files_only=True)
    assert Path(found).read_bytes() == repos["org/alpha"]["config.json"]
    assert not list(hf_env.rglob("*.incomplete"))
    # Exactly one content GET per locked file, and nothing else.
    settle(local_hub)
    assert local_hub.count("GET", "/resolve/") == 5
    assert local_hub.count(path_contains="/api/") == 0
    assert load_lock(project) == lock  # --locked never rewrites the lock


def test_warm_sync_makes_zero_requests(
    project: Path, local_hub: LocalHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "sync", "-m", str(project))[0] == 0
    clear(local_hub)
    code, _, err = run(capsys, "sync", "-m", str(project))
    assert code == 0, err
    assert "0 file(s) downloaded" in err and "5 already present" in err
    assert logged(local_hub) == []


def test_files_placed_by_hf_hub_download_are_hashed_once_not_downloaded(
    project: Path, hf_env: Path, local_hub: LocalHub
) -> None:
    lock = load_lock(project)
    for ref in lock.files():
        hf.hf_hub_download(
            ref.repo_id, ref.path, revision=ref.commit, cache_dir=hf_env, endpoint=local_hub.url
        )
    clear(local_hub)
    result = lib_sync(lock)
    assert logged(local_hub) == []
    assert result.downloaded == ()  # type: ignore[attr-defined]
    records = list(hf_env.glob("models--*/.modelctl/verified/*.json"))
    assert len(records) == 5


def test_a_wrong_local_file_is_replaced(
    project: Path, hf_env: Path, repos: dict[str, dict[str, bytes]], local_hub: LocalHub
) -> None:
    lock = load_lock(project)
    lib_sync(lock)
    ref = next(r for r in lock.files() if r.path == "config.json")
    blob_path = HfCacheStore(hf_env).content_path(ref)
    blob_path.write_bytes(b'{"hidden": 65}')  # same size, other content
    clear(local_hub)
    lib_sync(lock)
    assert resolve_gets(local_hub, "config.json") == [None]
    assert blob_path.read_bytes() == repos["org/alpha"]["config.json"]


# ------------------------------------------------------------------------------ events


def test_events_come_in_order_and_the_aggregate_is_monotone(project: Path) -> None:
    events: list[Event] = []

    class Collect:
        def on_event(self, event: Event) -> None:
            events.append(event)

    lib_sync(load_lock(project), listener=Collect())
    assert isinstance(events[0], DownloadPlanReady)
    assert isinstance(events[-1], SyncFinished)
    plan = events[0].plan
    total = plan.download_bytes()
    assert total == sum(r.size or 0 for r in load_lock(project).files())
    aggregates = [e for e in events if isinstance(e, AggregateProgress)]
    done = [a.bytes_downloaded for a in aggregates]
    assert done == sorted(done) and done[-1] == total
    assert aggregates[-1].files_complete == aggregates[-1].files_total == 5
    for e in events[1:-1]:
        assert not isinstance(e, (DownloadPlanReady, SyncFinished))
    for f in plan.files:
        mine = [e for e in events if getattr(e, "file", None) == f]
        assert isinstance(mine[0], FileStarted) and isinstance(mine[-1], FileDone)
        progress = [e for e in mine if isinstance(e, FileProgress)]
        assert progress[-1].bytes_done == f.size_bytes
    # Throttled: a 12 MiB file sends at most one FileProgress per MiB (+ the last one).
    big = [e for e in events if isinstance(e, FileProgress) and e.file.filename == "weights.bin"]
    assert 1 <= len(big) <= BIG // MiB + 1
    finished = events[-1]
    assert isinstance(finished, SyncFinished)
    assert finished.files_downloaded == 5 and finished.bytes_transferred == total


# ------------------------------------------------------------------------------ faults


def test_dropped_connection_is_resumed_within_one_run(
    project: Path, hf_env: Path, repos: dict[str, dict[str, bytes]], local_hub: LocalHub
) -> None:
    local_hub.faults.set(drop_after_bytes=3 * MiB, drop_count=1, paths={"weights.bin"})
    lib_sync(load_lock(project))
    ranges = resolve_gets(local_hub, "weights.bin")
    assert len(ranges) == 2 and ranges[0] is None
    first = next(r for r in local_hub.requests if r.path.endswith("/weights.bin"))
    assert first.bytes_sent == 3 * MiB
    assert ranges[1] == f"bytes={3 * MiB}-"
    path = hf.hf_hub_download("org/alpha", "weights.bin", cache_dir=hf_env, local_files_only=True)
    assert Path(path).read_bytes() == repos["org/alpha"]["weights.bin"]


def test_retry_after_is_honoured_and_failures_are_bounded(
    project: Path, local_hub: LocalHub
) -> None:
    local_hub.faults.set(status_codes=[429, 503], retry_after=0, paths={"b.txt"})
    lib_sync(load_lock(project), jobs=1)
    assert resolve_gets(local_hub, "b.txt") == [None, None, None]

    local_hub.faults.set(status_codes=[500] * 20, paths={"config.json"})
    lock = load_lock(project)
    for ref in lock.files():  # start from an empty cache
        cache = HfCacheStore(from_env(os.environ).hf_cache)
        cache.content_path(ref).unlink()
    clear(local_hub)
    with pytest.raises(NetworkError, match="after 5 attempts"):
        lib_sync(lock)
    assert len(resolve_gets(local_hub, "config.json")) == 5
    # Every other file was still synced.
    assert len(resolve_gets(local_hub, "weights.bin")) == 1


def test_corrupted_byte_fails_with_exit_4_and_nothing_at_the_final_path(
    project: Path, hf_env: Path, local_hub: LocalHub, capsys: pytest.CaptureFixture[str]
) -> None:
    local_hub.faults.set(wrong_bytes=True, paths={"small.gguf"})
    code, _, err = run(capsys, "sync", "-m", str(project), "--frozen")
    assert code == 4, err
    ref = next(r for r in load_lock(project).files() if r.path == "small.gguf")
    assert "integrity error" in err and str(ref.digest) in err
    assert f"org/beta@{ref.commit}:small.gguf" in err
    store = HfCacheStore(hf_env)
    assert not store.final_path(ref).exists()
    assert not store.content_path(ref).exists()
    assert not store.partial_path(ref).exists()
    assert len(resolve_gets(local_hub, "small.gguf")) == 2  # one retry from zero
    # The other files are complete.
    assert store.final_path(next(r for r in load_lock(project).files() if r.path == "b.txt"))


def test_lfs_redirect_to_another_origin_with_a_token(
    tmp_path: Path,
    repos: dict[str, dict[str, bytes]],
    hub_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with LocalHub(hub_root, token="s3cret") as hub:
        hub.faults.set(redirect_lfs=True)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", "s3cret")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-token"))
        manifest = tmp_path / "p2" / "modelctl.yaml"
        manifest.parent.mkdir()
        manifest.write_text(MANIFEST)
        assert main(["lock", "-m", str(manifest)]) == 0
        lib_sync(lockfile.load(manifest.with_suffix(".lock")))
        settle(hub)
        assert hub.count("GET", "/blobs/") == 2  # the two LFS files, via the "CDN"
        monkeypatch.delenv("HF_TOKEN")
        with pytest.raises(Exception, match="refused"):
            lib_sync(
                lockfile.load(manifest.with_suffix(".lock")),
                store=TargetStore(tmp_path / "no-token"),
            )


# ------------------------------------------------------------------------------ modes


def test_offline_names_every_missing_file_and_makes_no_request(
    project: Path, local_hub: LocalHub, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "sync", "-m", str(project), "--offline")
    assert code == 3, err
    for _, path in EXPECTED:
        assert path in err
    assert logged(local_hub) == []


def test_hf_hub_offline_env_also_means_offline(
    project: Path,
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert run(capsys, "sync", "-m", str(project))[0] == 0
    clear(local_hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert run(capsys, "sync", "-m", str(project))[0] == 0  # all present: fine offline
    assert logged(local_hub) == []


def test_locked_fails_on_a_stale_lock_and_frozen_needs_no_manifest(
    project: Path,
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lock_path = project.with_suffix(".lock")
    before = lock_path.read_bytes()
    project.write_text(MANIFEST.replace('"*.txt"', "b.txt"))
    code, _, err = run(capsys, "sync", "-m", str(project), "--locked")
    assert code == 1 and "stale lock" in err
    assert logged(local_hub) == []
    # --frozen: the manifest is not read at all.
    project.unlink()
    code, _, err = run(capsys, "sync", "--frozen", "--lockfile", str(lock_path))
    assert code == 0, err
    assert lock_path.read_bytes() == before
    # Found upward from the working directory, too.
    sub = lock_path.parent / "deep" / "er"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    code, _, err = run(capsys, "sync", "--frozen")
    assert code == 0, err


def test_without_flags_a_stale_lock_is_relocked_first(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write_text(MANIFEST.replace('"*.txt"', "b.txt"))
    code, _, err = run(capsys, "sync", "-m", str(project))
    assert code == 0, err
    assert "locking first" in err
    assert {r.path for r in load_lock(project).files()} == {p for _, p in EXPECTED} - {
        "notes/a.txt"
    }


def test_target_tree_holds_real_files(
    project: Path,
    tmp_path: Path,
    repos: dict[str, dict[str, bytes]],
    capsys: pytest.CaptureFixture[str],
    local_hub: LocalHub,
) -> None:
    target = tmp_path / "models"
    code, out, err = run(capsys, "sync", "-m", str(project), "--target", str(target))
    assert code == 0, err
    assert out.strip() == str(target)
    for ref in load_lock(project).files():
        path = target / ref.asset / ref.path
        assert path.is_file() and not path.is_symlink()
        assert path.read_bytes() == repos[ref.repo_id][ref.path]
    assert not [p for p in target.rglob("*") if p.is_symlink() or "partial" in p.name]
    clear(local_hub)
    assert run(capsys, "sync", "-m", str(project), "--target", str(target))[0] == 0
    assert logged(local_hub) == []
    assert run(capsys, "verify", "-m", str(project), "--target", str(target), "--full")[0] == 0


# ------------------------------------------------------------------------------ processes


def cli_env(hf_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HF_HOME"] = str(hf_home)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


def spawn(project: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "modelctl", "sync", "--frozen", "-m", str(project), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(cond: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def wait_for_partial(path: Path, proc: subprocess.Popen[str], timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        size = path.stat().st_size if path.exists() else 0
        if size > 0:
            return size
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("no partial file appeared")


@pytest.mark.slow
def test_resume_after_kill_9(
    project: Path, hf_env: Path, local_hub: LocalHub, repos: dict[str, dict[str, bytes]]
) -> None:
    ref = next(r for r in load_lock(project).files() if r.path == "weights.bin")
    partial = HfCacheStore(hf_env).partial_path(ref)
    local_hub.faults.set(slow_bytes_per_sec=4 * MiB, paths={"weights.bin"})
    proc = spawn(project, cli_env(hf_env.parent))
    wait_for_partial(partial, proc)
    time.sleep(0.3)
    proc.kill()  # SIGKILL: no cleanup at all
    proc.wait()
    have = partial.stat().st_size
    assert 0 < have < BIG
    local_hub.faults.reset()
    wait_until(lambda: len(resolve_gets(local_hub, "weights.bin")) == 1)  # the killed GET
    clear(local_hub)
    r = subprocess.run(
        [sys.executable, "-m", "modelctl", "sync", "--frozen", "-m", str(project)],
        env=cli_env(hf_env.parent),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert resolve_gets(local_hub, "weights.bin") == [f"bytes={have}-"]
    sent = next(x for x in local_hub.requests if x.path.endswith("/weights.bin")).bytes_sent
    assert sent == BIG - have
    assert not partial.exists()
    assert main(["verify", "--full", "-m", str(project)]) == 0


@pytest.mark.slow
def test_ctrl_c_exits_130_and_keeps_the_partial_file(
    project: Path, hf_env: Path, local_hub: LocalHub
) -> None:
    ref = next(r for r in load_lock(project).files() if r.path == "weights.bin")
    partial = HfCacheStore(hf_env).partial_path(ref)
    # Slow enough that the signal lands mid-download even when a loaded machine lets the
    # poll below see the partial file late (at 4 MiB/s the sync sometimes finished first).
    local_hub.faults.set(slow_bytes_per_sec=MiB // 2, paths={"weights.bin"})
    proc = spawn(project, cli_env(hf_env.parent))
    wait_for_partial(partial, proc)
    assert proc.poll() is None, "the sync ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert partial.exists() and partial.stat().st_size > 0
    assert not HfCacheStore(hf_env).final_path(ref).exists()


@pytest.mark.slow
def test_two_concurrent_syncs_download_each_file_once(
    project: Path, hf_env: Path, local_hub: LocalHub
) -> None:
    local_hub.faults.set(slow_bytes_per_sec=16 * MiB)
    env = cli_env(hf_env.parent)
    procs = [spawn(project, env, "--json") for _ in range(2)]
    results = [p.communicate(timeout=60) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    for _, path in EXPECTED:
        assert len(resolve_gets(local_hub, path)) == 1, path
    assert main(["verify", "--full", "-m", str(project)]) == 0


@pytest.mark.slow
def test_disk_full_is_a_storage_error_and_keeps_a_valid_prefix(
    project: Path, hf_env: Path, local_hub: LocalHub, repos: dict[str, dict[str, bytes]]
) -> None:
    """RLIMIT_FSIZE makes writes past 4 MiB fail (EFBIG), as a full disk would (ENOSPC)."""
    import resource

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4 * MiB, 4 * MiB))

    proc = subprocess.run(
        [sys.executable, "-m", "modelctl", "sync", "--frozen", "-m", str(project), "-j", "1"],
        env=cli_env(hf_env.parent),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
    )
    assert proc.returncode == 5, proc.stderr
    assert "storage error" in proc.stderr
    ref = next(r for r in load_lock(project).files() if r.path == "weights.bin")
    store = HfCacheStore(hf_env)
    assert not store.final_path(ref).exists()
    prefix = store.partial_path(ref).read_bytes()
    assert 0 < len(prefix) <= 4 * MiB
    assert repos["org/alpha"]["weights.bin"].startswith(prefix)
    clear(local_hub)
    lib_sync(load_lock(project))
    assert resolve_gets(local_hub, "weights.bin") == [f"bytes={len(prefix)}-"]


# ------------------------------------------------------------------------------ threads


def test_cancel_event_stops_workers_and_keeps_partials(
    project: Path, hf_env: Path, local_hub: LocalHub
) -> None:
    from modelctl.fs.flock import Cancelled

    local_hub.faults.set(slow_bytes_per_sec=2 * MiB, paths={"weights.bin"})
    ref = next(r for r in load_lock(project).files() if r.path == "weights.bin")
    partial = HfCacheStore(hf_env).partial_path(ref)
    cancel = threading.Event()

    def stop_when_started() -> None:
        while not (partial.exists() and partial.stat().st_size > 0):
            time.sleep(0.01)
        cancel.set()

    t = threading.Thread(target=stop_when_started)
    t.start()
    with pytest.raises(Cancelled):
        lib_sync(load_lock(project), cancel=cancel)
    t.join()
    assert partial.stat().st_size > 0


def test_integrity_error_type(project: Path, local_hub: LocalHub) -> None:
    local_hub.faults.set(wrong_bytes=True, paths={"config.json"})
    with pytest.raises(IntegrityError) as info:
        lib_sync(load_lock(project))
    assert "gitsha1:" in str(info.value)
