"""kill -9 of `python -m modelctl sync` while one file comes as several ranges at once.

After each kill: no final file, the sidecar records only ranges whose bytes are in the
partial file, and the next run asks only for what the sidecar does not hold.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from modelctl.store.layout import HfCacheStore
from modelctl.testing.hub import LocalHub
from modelctl.transfer.segments import Ranges, state_path
from tests.support.fault_report import REPORT
from tests.support.helpers import (
    MiB,
    audit,
    clear,
    cli_env,
    content_gets,
    make_project,
    seeded_bytes,
    spawn_sync,
    stray_temp_files,
)

pytestmark = pytest.mark.faults

MANIFEST = """\
assets:
  big:
    repo: org/s
    files: [w.safetensors]
"""
SIZE = 32 * MiB  # four of the CLI's 8 MiB pieces
RATE = 4 * MiB  # per connection: a run takes about 2 s
KILLS = 3


def recorded(path: Path) -> Ranges:
    data = json.loads(path.read_text())
    return Ranges((a, b) for a, b in data["done"])


def asked(spans: list[str | None]) -> Ranges:
    out = Ranges()
    for r in spans:
        assert r is not None
        first, last = r.removeprefix("bytes=").split("-")
        out.add(int(first), int(last) + 1)
    return out


def test_kill_9_of_a_segmented_download_resumes_only_missing_ranges(
    tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub
) -> None:
    data = seeded_bytes(31, SIZE)
    project = make_project(
        tmp_path / "proj", hub_root, {"org/s": {"w.safetensors": data}}, MANIFEST
    )
    ref = project.ref("w.safetensors")
    hf_home = tmp_path / "hf"
    env = {**cli_env(hf_home), "HF_HUB_CACHE": str(hf_home / "hub")}
    store = HfCacheStore(hf_home / "hub")
    partial, sidecar = store.partial_path(ref), state_path(store.partial_path(ref))
    local_hub.faults.set(slow_bytes_per_sec=RATE)
    before = Ranges()
    for kill in range(KILLS):
        clear(local_hub)
        proc = spawn_sync(project, env, "-x", "4")
        deadline = time.monotonic() + 30
        # Until this run has recorded some new bytes (at least 2 MiB more).
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if recorded(sidecar).total() >= before.total() + 2 * MiB:
                    break
            except (FileNotFoundError, ValueError, KeyError):
                pass
            time.sleep(0.02)
        assert proc.poll() is None, f"kill {kill}: the run ended before its kill"
        proc.kill()
        proc.communicate()
        REPORT.add("kills")
        assert not store.content_path(ref).exists()
        done = recorded(sidecar)
        have = partial.read_bytes()
        assert len(have) == SIZE
        for a, b in done.spans:  # every recorded byte is in the partial file
            assert have[a:b] == data[a:b], f"kill {kill}: range {a}-{b} recorded but not written"
        # This run asked only for what the previous sidecar did not hold.
        mine = asked([g.range for g in content_gets(local_hub, ref)])
        overlap = [(a, b) for a, b in mine.spans for c, d in before.spans if a < d and c < b]
        assert overlap == [], f"kill {kill}: re-fetched recorded ranges {overlap}"
        assert done.total() > before.total()
        before = done
    local_hub.faults.reset()
    clear(local_hub)
    finish = spawn_sync(project, env, "-x", "4")
    _, err = finish.communicate(timeout=60)
    assert finish.returncode == 0, err.decode()
    last = asked([g.range for g in content_gets(local_hub, ref)])
    assert last.total() == SIZE - before.total()
    assert Ranges([*last.spans, *before.spans]).spans == ((0, SIZE),)
    assert audit(project.lock(), store).checked == 1
    assert stray_temp_files(store.root) == []
