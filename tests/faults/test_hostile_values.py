"""Hostile values from servers and planted files (issue 24 item 4): each ends in one
clear error (exit 3) or is ignored, never a traceback or a hang, and nothing is placed
at a final path.

- a redirect ``Location`` with an out-of-range port, from the Hub/CDN during a
  segmented download, and from a registry for a layer blob or the lockfile blob;
- a registry token with CR/LF, or characters outside Latin-1, or too long;
- a FIFO planted at a segmented download's range sidecar.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelctl.errors import EXIT_NETWORK, NetworkError
from modelctl.hub.source import HubSource
from modelctl.settings import from_env
from modelctl.store.layout import HfCacheStore
from modelctl.sync import sync
from modelctl.testing.hub import LocalHub
from modelctl.transfer.segments import SegmentPolicy, state_path
from tests.oci.conftest import requires_registry
from tests.support.fault_report import REPORT
from tests.support.helpers import FAST, MiB, Project, audit, lib_sync, make_project
from tests.support.helpers import cli_in_process as run_cli
from tests.support.helpers import seeded_bytes as blob
from tests.support.servers import registry as reg

pytestmark = pytest.mark.faults

MANIFEST = """\
assets:
  big:
    repo: org/s
    files: [w.safetensors, config.json]
"""
SIZE = 1 * MiB
SPLIT = SegmentPolicy(connections=4, min_piece=128 * 1024, max_piece=256 * 1024)
BAD_PORT = "http://127.0.0.1:99999/x"


def _segmented() -> HubSource:
    return HubSource(from_env(os.environ), policy=FAST, segments=SPLIT)


@pytest.fixture
def big(tmp_path: Path, hub_root: Path, hf_env: Path) -> Project:
    return make_project(
        tmp_path / "proj", hub_root,
        {"org/s": {"w.safetensors": blob(41, SIZE), "config.json": b"{}"}}, MANIFEST,
    )  # fmt: skip


@pytest.mark.parametrize(
    "location",
    [BAD_PORT, "http://127.0.0.1:0/x", "http://[::1/x", "ftp://127.0.0.1/x", "http://u:p@127.0.0.1:1/x",
     "http://127.0.0.1/\u00fc", "http://127.0.0.1/" + "a" * 9000],
)  # fmt: skip
def test_a_hostile_cdn_location_during_a_segmented_download_is_a_clear_error(
    location: str, big: Project, hf_env: Path, local_hub: LocalHub
) -> None:
    project = big
    store = HfCacheStore(hf_env)
    local_hub.faults.set(redirect_lfs=True, redirect_location=location)
    with pytest.raises(NetworkError) as info:
        sync(project.lock(), store, _segmented())
    assert info.value.exit_code == EXIT_NETWORK
    assert "not a usable URL" in info.value.render()
    REPORT.add("hostile")
    ref = project.ref("w.safetensors")
    assert not store.final_path(ref).exists()
    audit(project.lock(), store)


def test_a_fifo_at_the_range_sidecar_neither_hangs_nor_counts(
    big: Project, hf_env: Path, local_hub: LocalHub
) -> None:
    project = big
    store = HfCacheStore(hf_env)
    ref = project.ref("w.safetensors")
    partial = store.partial_path(ref)
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(project.data(ref)[: SIZE // 2])
    sidecar = state_path(partial)
    os.mkfifo(sidecar)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sync(project.lock(), store, _segmented())
        except BaseException as exc:  # noqa: BLE001  # handed to the test thread
            errors.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():
        # Unblock the hung open (a writer on the FIFO) so the thread can end.
        fd = os.open(sidecar, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        worker.join(timeout=10)
        pytest.fail("sync hung on a FIFO planted at the range sidecar")
    assert errors == []
    REPORT.add("hostile")
    assert store.final_path(ref).read_bytes() == project.data(ref)
    audit(project.lock(), store)


def test_a_hostile_next_hop_never_escapes_as_a_traceback_from_the_cli(
    big: Project, hf_env: Path, local_hub: LocalHub, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same, end to end: exit 3 and a message, not exit 1 and ``Port out of range``."""
    local_hub.faults.set(redirect_lfs=True, redirect_location=BAD_PORT)
    manifest = project_manifest(big)
    code, _out, err = run_cli(capsys, "sync", "--frozen", "-x", "1", "-m", str(manifest))
    assert code == EXIT_NETWORK, err
    assert "a redirect Location is not a usable URL (Port out of range" in err
    assert "Traceback" not in err
    REPORT.add("hostile")


def project_manifest(project: Project) -> Path:
    return project.lock_path.with_suffix(".yaml")


# --------------------------------------------------------------------------- registries


@pytest.fixture
def pushed(
    tmp_path: Path, hub_root: Path, hf_env: Path
) -> Iterator[tuple[Path, reg.Registry, str]]:
    if reg.available():
        pytest.skip(f"needs {reg.available()}")
    manifest = tmp_path / "oci" / "modelctl.yaml"
    make_project(
        manifest.parent, hub_root, {"org/o": {"w.safetensors": blob(42, 200_000)}},
        "assets:\n  m:\n    repo: org/o\n    files: [w.safetensors]\n",
    )  # fmt: skip
    from modelctl.cli import main

    assert main(["sync", "-q", "-m", str(manifest)]) == 0
    r = reg.Registry(tmp_path / "registry").start()
    dest = f"oci://{r.address}/team/m:v1"
    assert main(["push", dest, "-m", str(manifest)]) == 0
    yield manifest, r, dest
    r.stop()


def _sync_from(manifest: Path, dest: str, target: Path) -> list[str]:
    return ["sync", "--frozen", "-m", str(manifest), "--target", str(target), "--from", dest]


@requires_registry
@pytest.mark.parametrize("which", ["lockfile", "layer"])
def test_a_registry_redirect_with_an_out_of_range_port_is_a_clear_error(
    which: str, pushed: tuple[Path, reg.Registry, str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    manifest, r, dest = pushed
    layer = "sha256:" + hashlib.sha256(blob(42, 200_000)).hexdigest()
    lock_digest = "sha256:" + hashlib.sha256(manifest.with_suffix(".lock").read_bytes()).hexdigest()
    digests = {lock_digest if which == "lockfile" else layer}
    with reg.Proxy(r, location=BAD_PORT, redirect_digests=digests) as proxy:
        target = tmp_path / "t"
        code, _out, err = run_cli(
            capsys, *_sync_from(manifest, dest.replace(r.address, proxy.address), target)
        )
    assert code == EXIT_NETWORK, err
    assert "not a usable URL (Port out of range" in err and "Traceback" not in err
    assert not (target / "m" / "w.safetensors").exists()
    REPORT.add("hostile")


@requires_registry
@pytest.mark.parametrize(
    "token",
    ["abc\r\nX-Injected: 1", "abc\ndef", "t\u00f6ken", "\u0442\u043e\u043a\u0435\u043d",
     "a b", "", "a" * 20_000],
    ids=["crlf", "lf", "latin1", "cyrillic", "space", "empty", "too-long"],
)  # fmt: skip
def test_a_hostile_registry_token_is_refused_where_it_enters(
    token: str, pushed: tuple[Path, reg.Registry, str], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    manifest, r, dest = pushed
    with reg.Proxy(r, bearer_token=token) as proxy:
        target = tmp_path / "t"
        code, _out, err = run_cli(
            capsys, *_sync_from(manifest, dest.replace(r.address, proxy.address), target)
        )
    assert code == EXIT_NETWORK, err
    assert "the registry's token service sent" in err and "Traceback" not in err
    assert "X-Injected" not in err
    assert not (target / "m" / "w.safetensors").exists()
    REPORT.add("hostile")


def test_lib_sync_still_clean_after_the_hostile_cases(
    big: Project, hf_env: Path, local_hub: LocalHub
) -> None:
    """A control: the same project syncs when the server behaves."""
    lib_sync(big, HfCacheStore(hf_env))
    audit(big.lock(), HfCacheStore(hf_env))
