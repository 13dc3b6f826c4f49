"""Segmented downloads against the real local Hub: ranges over several connections, the
fallback for a server ignoring Range, one failing range retried alone, a flipped byte."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from modelctl.errors import IntegrityError
from modelctl.hub.source import HubSource
from modelctl.settings import from_env
from modelctl.store.layout import HfCacheStore, Store, TargetStore
from modelctl.store.partial import PartialFile
from modelctl.sync import SyncResult, sync
from modelctl.testing.hub import LocalHub, RequestRecord
from modelctl.transfer.segments import Ranges, SegmentPolicy, state_path
from tests.support.helpers import (
    FAST,
    Project,
    audit,
    clear,
    cli_in_process,
    content_gets,
    make_project,
    seeded_bytes,
    stray_temp_files,
    was_short,
)

KiB = 1024
MiB = 1024 * KiB
# Not adaptive: 4 connections as soon as the first range is answered, whatever the CPU.
SMALL = SegmentPolicy(connections=4, min_piece=256 * KiB, adaptive=False)
MANIFEST = """\
assets:
  big:
    repo: org/seg
    files: [a.safetensors, b.safetensors, config.json]
"""
REPOS = {
    "org/seg": {
        "a.safetensors": seeded_bytes(21, 3 * MiB + 12_345),
        "b.safetensors": seeded_bytes(22, 2 * MiB + 7),
        "config.json": b'{"x": 1}',
    }
}


def seg_sync(project: Project, store: Store, policy: SegmentPolicy = SMALL) -> SyncResult:
    source = HubSource(from_env(os.environ), policy=FAST, segments=policy)
    return sync(project.lock(), store, source)


def spans(records: list[RequestRecord]) -> list[tuple[int, int]]:
    """The [start, end) each ranged GET asked for."""
    out = []
    for r in records:
        assert r.range is not None, r
        first, last = r.range.removeprefix("bytes=").split("-")
        out.append((int(first), int(last) + 1))
    return sorted(out)


@pytest.fixture
def project(tmp_path: Path, hub_root: Path, hf_env: Path) -> Project:
    return make_project(tmp_path / "proj", hub_root, REPOS, MANIFEST)


@pytest.mark.parametrize("layout", ["cache", "target"])
def test_a_large_file_comes_as_ranges_that_tile_it_exactly(
    tmp_path: Path, project: Project, local_hub: LocalHub, layout: str
) -> None:
    store: Store = (
        HfCacheStore(tmp_path / "hub") if layout == "cache" else TargetStore(tmp_path / "t")
    )
    # 8 MiB/s per connection, as a CDN caps each: on loopback one connection would be
    # done before a second one opened.
    local_hub.faults.set(slow_bytes_per_sec=8 * MiB)
    clear(local_hub)
    result = seg_sync(project, store)
    assert audit(project.lock(), store).checked == 3
    assert stray_temp_files(store.root) == []
    for name in ("a.safetensors", "b.safetensors"):
        ref = project.ref(name)
        size = ref.size or 0
        gets = content_gets(local_hub, ref)
        assert len(gets) >= 2, gets  # split, and all answered 206
        assert {g.status for g in gets} == {206}
        got = spans(gets)
        # The first connection asks for the whole file; each other one takes over the
        # rest of a range from a byte no other request started at (the connection that
        # held it stops there), and together they reach every byte.
        assert got[0] == (0, size)
        starts = [s for s, _ in got]
        assert len(set(starts)) == len(starts)
        assert Ranges(got).spans == ((0, size),)
    # Not more bytes than the files over the network.
    assert result.bytes_transferred == sum(len(d) for d in REPOS["org/seg"].values())


def test_a_server_ignoring_range_gets_one_stream(
    tmp_path: Path, project: Project, local_hub: LocalHub
) -> None:
    store = HfCacheStore(tmp_path / "hub")
    local_hub.faults.set(ignore_range=True)
    clear(local_hub)
    seg_sync(project, store)
    assert audit(project.lock(), store).checked == 3
    assert stray_temp_files(store.root) == []
    ref = project.ref("a.safetensors")
    gets = content_gets(local_hub, ref)
    # The first ranged request got a 200 (and was dropped), then one plain stream.
    assert [g.status for g in gets] == [200, 200]
    assert gets[0].range is not None and gets[1].range is None


def test_one_failing_range_is_retried_alone(
    tmp_path: Path, project: Project, local_hub: LocalHub
) -> None:
    store = HfCacheStore(tmp_path / "hub")
    ref = project.ref("a.safetensors")
    local_hub.faults.set(drop_after_bytes=100_000, drop_count=1, paths={ref.path})
    clear(local_hub)
    result = seg_sync(
        project, store, SegmentPolicy(connections=4, min_piece=512 * KiB, adaptive=False)
    )
    assert audit(project.lock(), store).checked == 3
    gets = content_gets(local_hub, ref)
    dropped = [g for g in gets if was_short(g, ref.size or 0) and g.bytes_sent == 100_000]
    assert len(dropped) == 1, gets
    (start, _) = spans(dropped)[0]
    # The remainder of that range only, asked once from where it stopped; no other
    # range was asked for twice, and no byte was kept twice.
    starts = [s for s, _ in spans(gets)]
    assert starts.count(start + 100_000) == 1
    assert len(set(starts)) == len(starts)
    assert result.bytes_transferred == sum(len(d) for d in REPOS["org/seg"].values())


def test_a_flipped_byte_in_one_range_is_refused_with_exit_4(
    tmp_path: Path,
    hub_root: Path,
    hf_env: Path,
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The CLI's default pieces (8 MiB): a 20 MiB file may be split.
    repos = {"org/seg": {"a.safetensors": seeded_bytes(23, 20 * MiB), "config.json": b"{}"}}
    manifest = MANIFEST.replace("a.safetensors, b.safetensors, config.json", "a.safetensors")
    project = make_project(tmp_path / "proj", hub_root, repos, manifest)
    ref = project.ref("a.safetensors")
    # Capped per connection (as a CDN does), so the adaptive default opens more than one.
    local_hub.faults.set(
        wrong_bytes=True, wrong_byte_offset=13 * MiB + 5, slow_bytes_per_sec=32 * MiB
    )
    clear(local_hub)
    target = tmp_path / "t"
    code, _, err = cli_in_process(
        capsys, "sync", "--frozen", "-q", "-x", "4", "-m", str(project.manifest),
        "--target", str(target),
    )  # fmt: skip
    assert code == 4, err
    assert "do not match the locked digest" in err
    store = TargetStore(target)
    assert not store.final_path(ref).exists()
    assert stray_temp_files(target) == []  # the partial file and its sidecar are gone
    gets = content_gets(local_hub, ref)
    assert len(gets) >= 4 and all(g.range is not None for g in gets)  # split, twice
    local_hub.faults.reset()
    code, _, err = cli_in_process(
        capsys, "sync", "--frozen", "-q", "-x", "4", "-m", str(project.manifest),
        "--target", str(target),
    )  # fmt: skip
    assert code == 0, err
    assert audit(project.lock(), store).checked == 1


def test_a_killed_segmented_download_resumes_only_the_missing_ranges(
    tmp_path: Path, project: Project, local_hub: LocalHub
) -> None:
    """A sidecar and a partial file as a killed run leaves them (written ranges, holes):
    the next run hashes what is recorded and asks only for the holes."""
    store = HfCacheStore(tmp_path / "hub")
    ref = project.ref("a.safetensors")
    data = project.data(ref)
    size = len(data)
    partial = store.partial_path(ref)
    partial.parent.mkdir(parents=True, exist_ok=True)
    written = [(0, 700_000), (1_000_000, 1_600_000), (2_500_000, 2_600_000)]
    with partial.open("wb") as f:
        f.truncate(size)
        for a, b in written:
            f.seek(a)
            f.write(data[a:b])
    record = {"modelctl_ranges": 1, "size": size, "digest": str(ref.digest), "done": written}
    state_path(partial).write_text(json.dumps(record))
    clear(local_hub)
    result = seg_sync(project, store)
    assert audit(project.lock(), store).checked == 3
    assert stray_temp_files(store.root) == []
    got = spans(content_gets(local_hub, ref))
    holes = [(700_000, 1_000_000), (1_600_000, 2_500_000), (2_600_000, size)]
    # Every request lies inside a hole, together they reach every byte of the holes,
    # and only the holes' bytes were kept (b.safetensors and config.json aside).
    assert all(any(hs <= s and e <= he for hs, he in holes) for s, e in got)
    assert Ranges(got).spans == tuple(holes)
    others = sum(len(project.data(project.ref(n))) for n in ("b.safetensors", "config.json"))
    assert result.bytes_transferred - others == sum(e - s for s, e in holes)


def test_a_sidecar_for_other_bytes_counts_for_nothing(
    tmp_path: Path, project: Project, local_hub: LocalHub
) -> None:
    store = HfCacheStore(tmp_path / "hub")
    ref = project.ref("a.safetensors")
    size = ref.size or 0
    partial = store.partial_path(ref)
    partial.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("wb") as f:
        f.truncate(size)  # all zeros
    other = {"modelctl_ranges": 1, "size": size, "digest": "sha256:" + "0" * 64}
    state_path(partial).write_text(json.dumps({**other, "done": [[0, size]]}))
    clear(local_hub)
    result = seg_sync(project, store)
    assert audit(project.lock(), store).checked == 3
    assert Ranges(spans(content_gets(local_hub, ref))).spans == ((0, size),)
    assert result.bytes_transferred == sum(len(d) for d in REPOS["org/seg"].values())


# Splits (connections > 1) but never grows: the first window is longer than the download.
ONE_STREAM = SegmentPolicy(connections=4, min_piece=256 * KiB, probe_s=3600.0)


def test_one_stream_is_hashed_from_memory_never_read_back(
    tmp_path: Path, project: Project, local_hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The connection at the front hands each buffer to the file's coordinating thread,
    # which hashes it while the connection receives into the next: its bytes are written
    # once and hashed from memory, not read back, and not on the receiving thread.
    read_back: list[int] = []
    hashed_in_memory: list[int] = []
    hashing_threads: set[str] = set()
    real_written, real_next = PartialFile.hash_written, PartialFile.hash_next

    def hash_written(self: PartialFile, upto: int, buf: memoryview) -> None:
        read_back.append(upto - self.offset)
        real_written(self, upto, buf)

    def hash_next(self: PartialFile, data: memoryview | bytes) -> None:
        hashed_in_memory.append(len(data))
        hashing_threads.add(threading.current_thread().name)
        real_next(self, data)

    monkeypatch.setattr(PartialFile, "hash_written", hash_written)
    monkeypatch.setattr(PartialFile, "hash_next", hash_next)
    store = HfCacheStore(tmp_path / "hub")
    clear(local_hub)
    seg_sync(project, store, ONE_STREAM)
    assert audit(project.lock(), store).checked == 3
    big = [project.ref(n).size or 0 for n in ("a.safetensors", "b.safetensors")]
    for name in ("a.safetensors", "b.safetensors"):
        assert len(content_gets(local_hub, project.ref(name))) == 1  # one stream each
    assert read_back == []
    assert sum(hashed_in_memory) == sum(big)
    receiving = {n for n in hashing_threads if n.startswith("modelctl-range")}
    assert hashing_threads and not receiving, hashing_threads


def test_a_flipped_byte_in_one_stream_hashed_from_memory_is_refused(
    tmp_path: Path, project: Project, local_hub: LocalHub
) -> None:
    store = HfCacheStore(tmp_path / "hub")
    ref = project.ref("a.safetensors")
    local_hub.faults.set(wrong_bytes=True, wrong_byte_offset=2 * MiB + 3, paths={ref.path})
    clear(local_hub)
    with pytest.raises(IntegrityError, match="do not match the locked digest"):
        seg_sync(project, store, ONE_STREAM)
    assert not store.final_path(ref).exists()
    assert stray_temp_files(store.root) == []
