"""Network faults from the local Hub (127.0.0.1 only): drops, 5xx/429, slow bodies, wrong
bytes, failing CDN redirects. Every sync ends with the exact locked bytes or a clear
error; after each fault every final file is checked against the lock (REPORT)."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from modelctl.errors import EXIT_INTEGRITY, EXIT_NETWORK, IntegrityError, NetworkError
from modelctl.fs.flock import Cancelled
from modelctl.store.layout import HfCacheStore, Store, TargetStore
from modelctl.store.verify import verify
from modelctl.testing.hub import LocalHub
from modelctl.transfer.http import StdlibTransport, Timeouts
from modelctl.transfer.retry import RetryPolicy
from tests.support.fault_report import REPORT
from tests.support.helpers import (
    MiB,
    Project,
    audit,
    blob_gets,
    clear,
    cli_in_process,
    content_gets,
    lib_sync,
    make_project,
    range_start,
    resolve_gets,
    seeded_bytes,
    stray_temp_files,
    was_short,
)

pytestmark = pytest.mark.faults

SEED = 0x5EED_0001
MANIFEST = """\
assets:
  net:
    repo: org/net
    files: [model.safetensors, config.json, tokenizer.json]
  gg:
    kind: gguf
    repo: org/gg
    file: m.gguf
    tokenizer: null
"""
REPOS = {
    "org/net": {
        "model.safetensors": seeded_bytes(1, 3 * MiB),  # LFS: sha256
        "config.json": b'{"hidden_size": 64, "layers": 2}',  # regular: gitsha1
        "tokenizer.json": seeded_bytes(2, 300_000),
    },
    "org/gg": {"m.gguf": seeded_bytes(3, 1 * MiB)},
}
FILES = ("model.safetensors", "config.json", "tokenizer.json", "m.gguf")


@pytest.fixture
def proj(tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub) -> Project:
    p = make_project(tmp_path / "proj", hub_root, REPOS, MANIFEST)
    clear(local_hub)
    return p


def fresh_store(tmp_path: Path, name: str, i: int) -> Store:
    """Alternate between the two layouts: the HF cache and a --target tree."""
    if i % 2:
        return TargetStore(tmp_path / f"{name}-target-{i}")
    return HfCacheStore(tmp_path / f"{name}-cache-{i}")


def store_args(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """CLI arguments (and environment) that make `modelctl sync` use ``store``."""
    if isinstance(store, TargetStore):
        return ["--target", str(store.root)]
    monkeypatch.setenv("HF_HUB_CACHE", str(store.root))
    return []


def expected_drop_ranges(size: int, drop: int, count: int) -> list[str | None]:
    """The Range headers a resuming client sends when each of ``count`` answers stops after
    ``drop`` bytes (the server takes a drop even when the rest is shorter than it)."""
    ranges: list[str | None] = []
    offset = 0
    while offset < size:
        ranges.append(None if offset == 0 else f"bytes={offset}-")
        rest = size - offset
        offset += min(drop, rest) if count > 0 else rest
        count -= 1
    return ranges


# ------------------------------------------------------------------------------ drops


def test_random_mid_body_drops_resume_to_the_exact_bytes(
    proj: Project, local_hub: LocalHub, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    drops = 0
    for i in range(12):
        path = rng.choice(["model.safetensors", "tokenizer.json", "m.gguf", "config.json"])
        size = len(proj.data(proj.ref(path)))
        drop, count = rng.randint(1, size - 1), rng.randint(1, 4)
        ctx = f"seed={SEED} round={i} file={path} drop_after={drop} count={count}"
        store = fresh_store(tmp_path, "drops", i)
        local_hub.faults.set(drop_after_bytes=drop, drop_count=count, paths={path})
        lib_sync(proj, store)
        gets = resolve_gets(local_hub, proj.ref(path))
        assert [g.range for g in gets] == expected_drop_ranges(size, drop, count), ctx
        short = [g for g in gets if was_short(g, size)]
        assert short and all(g.bytes_sent == drop for g in short), ctx  # really dropped
        drops += len(short)
        audit(proj.lock(), store, context=ctx)
        assert stray_temp_files(store.root) == [], ctx
        local_hub.faults.reset()
        clear(local_hub)
    REPORT.add("faults", drops)


def test_drops_before_any_byte_give_up_after_five_attempts(
    proj: Project, local_hub: LocalHub, tmp_path: Path
) -> None:
    # Four empty answers in a row are survived (each attempt counts as a failure) ...
    store: Store = TargetStore(tmp_path / "t1")
    local_hub.faults.set(drop_after_bytes=0, drop_count=4, paths={"m.gguf"})
    lib_sync(proj, store)
    assert [g.bytes_sent for g in resolve_gets(local_hub, proj.ref("m.gguf"))] == [0, 0, 0, 0, MiB]
    audit(proj.lock(), store)
    # ... a server that never sends a byte is a network error (exit 3), nothing placed.
    clear(local_hub)
    store = HfCacheStore(tmp_path / "c2")
    local_hub.faults.set(drop_after_bytes=0, drop_count=None, paths={"m.gguf"})
    with pytest.raises(NetworkError, match="after 5 attempts") as info:
        lib_sync(proj, store)
    assert info.value.exit_code == EXIT_NETWORK
    assert "connection closed after 0 of" in info.value.render()
    assert len(resolve_gets(local_hub, proj.ref("m.gguf"))) == 5
    assert not store.final_path(proj.ref("m.gguf")).exists()
    REPORT.add("faults", 9)
    audit(proj.lock(), store)
    # The other files were synced regardless.
    assert store.final_path(proj.ref("model.safetensors")).is_file()


# ------------------------------------------------------------------------------ statuses


def test_5xx_and_429_are_retried_and_a_sixth_failure_is_a_clear_error(
    proj: Project, local_hub: LocalHub, tmp_path: Path
) -> None:
    rng = random.Random(SEED + 1)
    statuses = [408, 429, 500, 502, 503, 504]
    for i in range(6):
        path = rng.choice(FILES)
        codes = [rng.choice(statuses) for _ in range(rng.randint(1, 4))]
        ctx = f"seed={SEED + 1} round={i} file={path} codes={codes}"
        store = fresh_store(tmp_path, "status", i)
        local_hub.faults.set(status_codes=list(codes), retry_after=0, paths={path})
        lib_sync(proj, store)
        gets = content_gets(local_hub, proj.ref(path))
        assert [g.status for g in gets] == [*codes, 200], ctx
        REPORT.add("faults", len(codes))
        audit(proj.lock(), store, context=ctx)
        local_hub.faults.reset()
        clear(local_hub)
    # Five in a row that say no wait: the file fails with exit 3 and the last status
    # named; the rest syncs. (Answers that say how long to wait are budgeted by time
    # instead: tests/integration/test_retry_budget.py.)
    codes = [rng.choice(statuses) for _ in range(5)]
    store = TargetStore(tmp_path / "status-give-up")
    local_hub.faults.set(status_codes=list(codes), retry_after=None, paths={"tokenizer.json"})
    with pytest.raises(NetworkError) as info:
        lib_sync(proj, store)
    assert info.value.exit_code == EXIT_NETWORK
    assert f"after 5 attempts (HTTP {codes[-1]})" in info.value.render(), codes
    assert [g.status for g in content_gets(local_hub, proj.ref("tokenizer.json"))] == codes
    REPORT.add("faults", 5)
    assert not store.final_path(proj.ref("tokenizer.json")).exists()
    assert audit(proj.lock(), store).checked == 3


def test_backoff_grows_and_retry_after_is_honoured_up_to_its_cap(
    proj: Project, local_hub: LocalHub, tmp_path: Path
) -> None:
    policy = RetryPolicy(backoff_s=0.05, backoff_max_s=1.0, retry_after_max_s=1.5)

    def timed(i: int, **faults: object) -> float:
        local_hub.faults.set(paths={"config.json"}, **faults)
        store = TargetStore(tmp_path / f"timed-{i}")
        started = time.monotonic()
        lib_sync(proj, store, policy=policy)
        elapsed = time.monotonic() - started
        audit(proj.lock(), store)
        local_hub.faults.reset()
        return elapsed

    # No Retry-After: 0.05 + 0.1 + 0.2 + 0.4 s of doubling backoff.
    assert timed(0, status_codes=[503] * 4, retry_after=None) >= 0.75
    # Retry-After: 1 wins over the 0.05 s backoff ...
    assert timed(1, status_codes=[429], retry_after=1) >= 1.0
    # ... and a Retry-After of an hour waits only the cap.
    assert 1.5 <= timed(2, status_codes=[429], retry_after=3600) < 4.5
    REPORT.add("faults", 6)


# ------------------------------------------------------------------------------ slow bodies


def test_a_stalling_body_times_out_and_resumes(
    proj: Project, local_hub: LocalHub, tmp_path: Path
) -> None:
    """One byte every 0.25 s against a 0.15 s read timeout: each attempt times out after
    a byte and resumes from it; once the server is fast again the file completes."""
    path = "config.json"
    transport = StdlibTransport(Timeouts(connect_s=5.0, read_s=0.15))
    local_hub.faults.set(slow_bytes_per_sec=4, paths={path})

    def heal() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if sum(r.path.endswith("/" + path) for r in local_hub.requests) >= 4:
                break
            time.sleep(0.02)
        local_hub.faults.reset()

    healer = threading.Thread(target=heal)
    healer.start()
    store = TargetStore(tmp_path / "stall")
    lib_sync(proj, store, transport=transport, jobs=1)
    healer.join()
    gets = resolve_gets(local_hub, proj.ref(path), quiet=0.6)
    size = len(proj.data(proj.ref(path)))
    timed_out = [g for g in gets if was_short(g, size)]
    assert len(timed_out) >= 3, [(g.range, g.bytes_sent) for g in gets]
    starts = [range_start(g) for g in gets]
    assert starts == sorted(starts) and starts[-1] > 0, starts  # resumed, never restarted
    REPORT.add("faults", len(timed_out))
    audit(proj.lock(), store)


def test_a_slow_steady_body_is_not_a_failure(
    proj: Project, local_hub: LocalHub, tmp_path: Path
) -> None:
    transport = StdlibTransport(Timeouts(connect_s=5.0, read_s=0.5))
    local_hub.faults.set(slow_bytes_per_sec=2 * MiB, paths={"m.gguf"})
    store = HfCacheStore(tmp_path / "slow")
    started = time.monotonic()
    lib_sync(proj, store, transport=transport)
    assert time.monotonic() - started >= 0.4  # the throttle was real
    assert [g.range for g in resolve_gets(local_hub, proj.ref("m.gguf"))] == [None]
    REPORT.add("faults")
    audit(proj.lock(), store)


# ------------------------------------------------------------------------------ wrong bytes


def test_wrong_bytes_at_random_offsets_are_never_accepted(
    proj: Project,
    local_hub: LocalHub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(SEED + 2)
    cases: list[tuple[str, int, int | None]] = []
    for path in ("model.safetensors", "config.json", "m.gguf"):
        size = len(proj.data(proj.ref(path)))
        for offset in (0, size - 1, rng.randrange(size)):
            # Sometimes the connection also drops after the flipped byte: the bad byte then
            # sits in the prefix that the resumed request extends.
            drop = (
                rng.randint(offset + 1, size) if rng.random() < 0.5 and offset < size - 1 else None
            )
            cases.append((path, offset, drop))
    for i, (path, offset, drop) in enumerate(cases):
        ref = proj.ref(path)
        ctx = f"seed={SEED + 2} case={i} file={path} offset={offset} drop={drop}"
        store = fresh_store(tmp_path, "wrong", i)
        local_hub.faults.set(
            wrong_bytes=True, wrong_byte_offset=offset, paths={path},
            drop_after_bytes=drop, drop_count=1 if drop else 0,
        )  # fmt: skip
        code, _, err = cli_in_process(
            capsys,
            "sync",
            "--frozen",
            "--lockfile",
            str(proj.lock_path),
            *store_args(store, monkeypatch),
        )
        assert code == EXIT_INTEGRITY, f"{ctx}\n{err}"
        assert "integrity error" in err and str(ref.digest) in err, ctx
        assert "Traceback" not in err
        gets = resolve_gets(local_hub, proj.ref(path))
        assert len(gets) == (3 if drop and drop < len(proj.data(ref)) else 2), ctx
        REPORT.add("faults", 2)
        assert not store.final_path(ref).exists(), ctx
        assert not store.partial_path(ref).exists(), ctx  # deleted for safety
        assert audit(proj.lock(), store, context=ctx).checked == 3
        local_hub.faults.reset()
        clear(local_hub)


def test_a_corrupted_partial_file_is_caught_and_downloaded_again(
    proj: Project, local_hub: LocalHub, tmp_path: Path
) -> None:
    """A first run gets a flipped byte, then is stopped mid-file; the second run resumes
    from that bad prefix, sees the digest mismatch at the end and restarts from zero."""
    path = "model.safetensors"
    ref = proj.ref(path)
    store = HfCacheStore(tmp_path / "cache")
    partial = store.partial_path(ref)
    local_hub.faults.set(
        wrong_bytes=True, wrong_byte_offset=1000, slow_bytes_per_sec=2 * MiB, paths={path}
    )
    cancel = threading.Event()

    def stop_after_the_bad_byte() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if partial.exists() and partial.stat().st_size > 256 * 1024:
                break
            time.sleep(0.01)
        cancel.set()

    stopper = threading.Thread(target=stop_after_the_bad_byte)
    stopper.start()
    with pytest.raises(Cancelled):
        lib_sync(proj, store, cancel=cancel)
    stopper.join()
    have = partial.read_bytes()
    assert len(have) < len(proj.data(ref)) and have[1000] != proj.data(ref)[1000]
    local_hub.faults.reset()
    clear(local_hub)
    lib_sync(proj, store)
    assert [g.range for g in resolve_gets(local_hub, proj.ref(path))] == [
        f"bytes={len(have)}-",
        None,
    ]
    REPORT.add("faults")
    audit(proj.lock(), store)
    verify(proj.lock(), store, full=True)


# ------------------------------------------------------------------------------ redirects


@pytest.mark.parametrize("status", [403, 404, 500, 503])
def test_a_redirect_to_a_failing_blob_url_is_a_clear_error(
    proj: Project, local_hub: LocalHub, tmp_path: Path, status: int
) -> None:
    """The Hub sends LFS files to its storage (a CDN with signed URLs). A failure there says
    nothing about the lock or the token: each is retried through the Hub (a fresh URL),
    then reported as a network error (exit 3) naming the storage."""
    lfs = ("model.safetensors", "m.gguf")
    store = TargetStore(tmp_path / "t")
    local_hub.faults.set(redirect_lfs=True, fail_blob_redirect=True, fail_blob_status=status)
    with pytest.raises(NetworkError) as info:
        lib_sync(proj, store)
    message = info.value.render()
    assert info.value.exit_code == EXIT_NETWORK, message
    assert "after 5 attempts" in message and f"HTTP {status}" in message
    if status < 500:
        assert "storage the Hub redirected to" in message
    for path in lfs:
        ref = proj.ref(path)
        assert len(resolve_gets(local_hub, ref)) == len(blob_gets(local_hub, ref)) == 5
        assert not store.final_path(ref).exists()
    REPORT.add("faults", 10)
    assert audit(proj.lock(), store).checked == 2  # the regular files, not redirected
    # Once the CDN answers, the same tree completes through the redirect.
    local_hub.faults.set(fail_blob_redirect=False)
    clear(local_hub)
    lib_sync(proj, store)
    for path in lfs:
        assert [g.status for g in blob_gets(local_hub, proj.ref(path))] == [200]
    assert audit(proj.lock(), store).checked == 4


# ------------------------------------------------------------------------------ chaos


def test_random_fault_mixes_end_in_exact_bytes_or_a_clear_error(
    proj: Project, local_hub: LocalHub, tmp_path: Path
) -> None:
    """Seeded rounds of random faults on random files, syncing into the same two stores:
    each run succeeds or fails with exit 3/4; after each, every final file is exact."""
    rng = random.Random(SEED + 3)
    stores: list[Store] = [HfCacheStore(tmp_path / "chaos-cache"), TargetStore(tmp_path / "ct")]
    outcomes = {"ok": 0, EXIT_NETWORK: 0, EXIT_INTEGRITY: 0}
    for i in range(16):
        path = rng.choice(FILES)
        size = len(proj.data(proj.ref(path)))
        faults: dict[str, object] = {"paths": {path}}
        kind = rng.choice(["drop", "status", "wrong", "drop+status", "redirect-fail"])
        if "drop" in kind:
            faults.update(drop_after_bytes=rng.randint(0, size - 1), drop_count=rng.randint(1, 6))
        if "status" in kind:
            faults.update(
                status_codes=[rng.choice([429, 500, 503]) for _ in range(rng.randint(1, 6))],
                retry_after=0,
            )
        if kind == "wrong":
            faults.update(wrong_bytes=True, wrong_byte_offset=rng.randrange(size))
        if kind == "redirect-fail":
            faults.update(redirect_lfs=True, fail_blob_redirect=True, fail_blob_status=503)
        ctx = f"seed={SEED + 3} round={i} {kind} {faults}"
        store = stores[i % 2]
        # Forget the file so that this round must fetch it again.
        store.final_path(proj.ref(path)).unlink(missing_ok=True)
        store.content_path(proj.ref(path)).unlink(missing_ok=True)
        local_hub.faults.set(**faults)
        try:
            lib_sync(proj, store)
            outcomes["ok"] += 1
        except (NetworkError, IntegrityError) as exc:
            outcomes[exc.exit_code] += 1
            assert "Traceback" not in exc.render()
        REPORT.add("faults")
        audit(proj.lock(), store, context=ctx)
        local_hub.faults.reset()
        clear(local_hub)
    assert outcomes["ok"] and outcomes[EXIT_INTEGRITY] and outcomes[EXIT_NETWORK], outcomes
    for store in stores:  # and a calm run repairs everything
        lib_sync(proj, store)
        verify(proj.lock(), store, full=True)
        assert audit(proj.lock(), store).checked == 4
        assert stray_temp_files(store.root) == []
