"""Deadlines and limits against a slow or tricky server (settings.Limits).

Before: a body at 1 byte / 2 s ran on with an ETA of hours; headers at 1 byte / 2 s
never timed out; "1 byte then drop" reset the failure count forever; a lock with
``size: null`` downloaded an endless body without limit; there was no overall deadline.
Each case runs with small limits, so each test takes a few seconds at most.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from modelctl.errors import InputError, NetworkError
from modelctl.hub.source import HubSource
from modelctl.lock import lockfile
from modelctl.lock.types import Lock
from modelctl.settings import Limits, from_env
from modelctl.store.layout import TargetStore
from modelctl.sync import SyncResult, sync
from modelctl.testing.hub import LocalHub
from modelctl.transfer.http import Response, StdlibTransport, Timeouts, Transport
from modelctl.transfer.retry import RetryPolicy
from modelctl.values import replace
from tests.support.fault_report import REPORT
from tests.support.helpers import (
    FAST,
    Project,
    audit,
    cli_in_process,
    content_gets,
    lib_sync,
    make_project,
    seeded_bytes,
)

pytestmark = pytest.mark.faults

MANIFEST = 'assets:\n  d:\n    repo: org/d\n    files: ["w.bin"]\n'
SIZE = 200_000
TIGHT = Limits(headers_s=0.6, low_speed_bps=50_000, low_speed_s=0.4, min_progress=64 * 1024)


def transport(limits: Limits) -> StdlibTransport:
    return StdlibTransport(Timeouts(connect_s=5.0, read_s=5.0, headers_s=limits.headers_s))


@pytest.fixture
def project(tmp_path: Path, hf_env: Path, hub_root: Path) -> Project:
    return make_project(
        tmp_path / "p", hub_root, {"org/d": {"w.bin": seeded_bytes(101, SIZE)}}, MANIFEST
    )


def limited_sync(
    project: Project,
    store: TargetStore,
    limits: Limits,
    *,
    lock: Lock | None = None,
    via: Transport | None = None,
    policy: RetryPolicy = FAST,
) -> SyncResult:
    settings = replace(from_env(os.environ), limits=limits)
    source = HubSource(settings, transport=via or transport(limits), policy=policy, jobs=1)
    return sync(lock or project.lock(), store, source, jobs=1)


def test_a_body_slower_than_the_limit_is_abandoned(
    tmp_path: Path, project: Project, local_hub: LocalHub
) -> None:
    """1 KiB/s against a 50 kB/s limit over 0.4 s: each attempt is cut, brings far less
    than min_progress, and after 5 such attempts the file fails (exit 3)."""
    local_hub.faults.set(slow_bytes_per_sec=1024)
    began = time.monotonic()
    with pytest.raises(NetworkError, match="slower than 50000 bytes/s"):
        limited_sync(project, TargetStore(tmp_path / "out"), TIGHT)
    REPORT.add("faults")
    assert time.monotonic() - began < 15
    assert len(content_gets(local_hub, project.ref("w.bin"))) == FAST.failures


def test_a_slow_body_that_advances_enough_completes(
    tmp_path: Path, project: Project, local_hub: LocalHub
) -> None:
    """Above the limit, a slow transfer is not cut: 400 kB/s against 50 kB/s."""
    local_hub.faults.set(slow_bytes_per_sec=400_000)
    store = TargetStore(tmp_path / "out")
    limited_sync(project, store, TIGHT)
    REPORT.add("faults")
    audit(project.lock(), store, context="slow but fast enough")
    assert len(content_gets(local_hub, project.ref("w.bin"))) == 1


def test_trickled_headers_time_out_in_total(
    tmp_path: Path, project: Project, local_hub: LocalHub
) -> None:
    """Headers at one byte per 0.05 s (each recv well within any socket timeout) take
    several seconds in all: headers_s = 0.6 s ends each attempt."""
    local_hub.faults.set(header_byte_delay_s=0.05)
    began = time.monotonic()
    with pytest.raises(NetworkError, match=r"no complete answer headers within 0\.6 s"):
        limited_sync(project, TargetStore(tmp_path / "out"), TIGHT)
    REPORT.add("faults")
    assert time.monotonic() - began < 15


def test_one_byte_then_drop_does_not_reset_the_failure_count(
    tmp_path: Path, project: Project, local_hub: LocalHub
) -> None:
    local_hub.faults.set(drop_after_bytes=1)
    with pytest.raises(NetworkError, match="download failed after 5 attempts"):
        limited_sync(project, TargetStore(tmp_path / "out"), Limits())
    REPORT.add("faults")
    # Before: one request per byte of the file, for as long as the file lasts.
    assert len(content_gets(local_hub, project.ref("w.bin"))) == FAST.failures


def test_big_drops_that_advance_still_resume_to_the_end(
    tmp_path: Path, project: Project, local_hub: LocalHub
) -> None:
    """A flaky link that drops after 70 kB each time still completes (each attempt
    brings more than min_progress): the progress rule does not punish real progress."""
    local_hub.faults.set(drop_after_bytes=70_000)
    store = TargetStore(tmp_path / "out")
    limited_sync(project, store, Limits())
    REPORT.add("faults")
    audit(project.lock(), store, context="drops of 70 kB")


def test_the_overall_deadline_ends_the_sync(
    tmp_path: Path, project: Project, local_hub: LocalHub, capsys: pytest.CaptureFixture[str]
) -> None:
    local_hub.faults.set(slow_bytes_per_sec=20_000)
    began = time.monotonic()
    code, _, err = cli_in_process(
        capsys,
        "sync",
        "-q",
        "--frozen",
        "--lockfile",
        str(project.lock_path),
        "--target",
        str(tmp_path / "out"),
        "--deadline",
        "1",
    )
    REPORT.add("faults")
    assert code == 3, err
    assert "deadline of 1 s passed" in err
    assert time.monotonic() - began < 5
    # What arrived is kept: the next sync resumes.
    local_hub.faults.reset()
    store = TargetStore(tmp_path / "out")
    assert store.partial_path(project.ref("w.bin")).stat().st_size > 0
    lib_sync(project, store)
    audit(project.lock(), store, context="after the deadline")


class _NoLength:
    """The local Hub's answers without Content-Length (chunked, or until the close)."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner

    def get(self, url: str, headers: Mapping[str, str]) -> Response:
        resp = self._inner.get(url, headers)
        original = resp.header

        def header(name: str) -> str | None:
            return None if name.lower() in ("content-length", "content-range") else original(name)

        resp.header = header  # type: ignore[method-assign]
        return resp


def test_a_file_of_unknown_size_is_capped(
    tmp_path: Path, project: Project, local_hub: LocalHub
) -> None:
    lock = project.lock()
    sizeless = replace(
        lock,
        assets=tuple(
            replace(
                a,
                sources=tuple(
                    replace(s, files=tuple(replace(f, size=None) for f in s.files))
                    for s in a.sources
                ),
            )
            for a in lock.assets
        ),
    )
    lockfile.write(project.lock_path, sizeless)
    limits = replace(TIGHT, unknown_size_max=100_000)
    with pytest.raises(NetworkError, match="more than 100000 bytes for a file locked without"):
        limited_sync(
            project,
            TargetStore(tmp_path / "out"),
            limits,
            lock=sizeless,
            via=_NoLength(transport(limits)),
        )
    REPORT.add("faults")


def test_timeouts_from_the_environment() -> None:
    settings = from_env(
        {"HF_HUB_DOWNLOAD_TIMEOUT": "120", "HF_HUB_ETAG_TIMEOUT": "7.5", "MODELCTL_DEADLINE": "600"}
    )
    limits = settings.limits
    assert (settings.download_timeout_s, settings.metadata_timeout_s) == (120.0, 7.5)
    # A slow caching proxy's setting is not undone by a shorter header or low-speed bound.
    assert (limits.headers_s, limits.low_speed_s, limits.deadline_s) == (120.0, 120.0, 600.0)
    assert from_env({}).limits == Limits()
    assert Timeouts.for_download(120.0, limits.headers_s).headers_s == 120.0
    for bad in ("0", "-1", "soon", "inf", "nan"):
        REPORT.add("bad_inputs")
        with pytest.raises(InputError, match="MODELCTL_DEADLINE must be a number of seconds"):
            from_env({"MODELCTL_DEADLINE": bad})
