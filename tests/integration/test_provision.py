"""``modelctl.provision`` / ``modelctl.download_plan`` against the local Hub on loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import modelctl
from modelctl.cli import main
from modelctl.errors import InputError, OfflineError, StaleLockError
from modelctl.http import HttpxTransport, StdlibTransport, default_transport
from modelctl.progress import DownloadPlanReady, Event, FileDone, SyncFinished
from modelctl.provisioning import as_listener, proxies_of
from modelctl.runtime import LockedModels
from tests.helpers import blob, write_repo

MANIFEST = "assets:\n  m:\n    repo: org/m\n    files: [w.bin, cfg.json]\n"
W = blob(1, 300_000)


@pytest.fixture
def project(
    tmp_path: Path, hub_root: Path, hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> Path:
    write_repo(hub_root, "org/m", {"w.bin": W, "cfg.json": b"{}"}, lfs_patterns=("*.bin",))
    manifest = tmp_path / "modelctl.yaml"
    manifest.write_text(MANIFEST)
    assert main(["lock", "-m", str(manifest)]) == 0
    capsys.readouterr()
    return manifest


def test_provision_downloads_then_returns_loadable_paths(project: Path, hf_env: Path) -> None:
    lock = project.with_suffix(".lock")
    before = modelctl.download_plan(lock)
    assert before.needs_download() and [f.filename for f in before.files] == ["cfg.json", "w.bin"]

    events: list[Event] = []
    models = modelctl.provision(lock, listener=events.append)  # a plain callable
    assert isinstance(models, LockedModels)
    assert models.path("m", "w.bin").read_bytes() == W
    assert str(models.path("m", "w.bin")).startswith(str(hf_env))
    assert isinstance(events[0], DownloadPlanReady) and isinstance(events[-1], SyncFinished)
    assert sorted(e.file.filename for e in events if isinstance(e, FileDone)) == [
        "cfg.json",
        "w.bin",
    ]
    assert not modelctl.download_plan(lock).needs_download()


def test_listener_object_target_tree_and_manifest(project: Path, tmp_path: Path) -> None:
    class Counter:
        def __init__(self) -> None:
            self.done = 0

        def on_event(self, event: Event) -> None:
            self.done += isinstance(event, FileDone)

    counter = Counter()
    target = tmp_path / "models"
    models = modelctl.provision(manifest=project, target=target, listener=counter, jobs=1)
    assert counter.done == 2
    assert models.path("m", "w.bin") == target / "m" / "w.bin"
    assert not modelctl.download_plan(manifest=project, target=target).needs_download()


def test_offline_names_what_is_missing_and_never_connects(project: Path, local_hub: object) -> None:
    lock = project.with_suffix(".lock")
    n = len(local_hub.requests)  # type: ignore[attr-defined]
    with pytest.raises(OfflineError) as err:
        modelctl.provision(lock, offline=True)
    assert "w.bin" in err.value.render() and "cfg.json" in err.value.render()
    assert len(local_hub.requests) == n  # type: ignore[attr-defined]
    modelctl.provision(lock)
    again = modelctl.provision(lock, offline=True, verify="full")
    assert again.path("m", "cfg.json").read_bytes() == b"{}"


def test_a_stale_lock_is_refused_when_the_manifest_is_given(project: Path) -> None:
    project.write_text(MANIFEST.replace("cfg.json]", "cfg.json, extra.txt]"))
    with pytest.raises(StaleLockError, match="does not match the manifest"):
        modelctl.provision(manifest=project)
    # Without the manifest the lock is used as it is (sync --frozen).
    assert modelctl.provision(project.with_suffix(".lock")).assets() == ["m"]


def test_lock_found_like_the_runtime_finds_it(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # no modelctl.lock above
    with pytest.raises(InputError, match=r"no modelctl\.lock found"):
        modelctl.provision()
    monkeypatch.setenv("MODELCTL_LOCK", str(project.with_suffix(".lock")))
    assert modelctl.provision().path("m", "w.bin").read_bytes() == W
    monkeypatch.delenv("MODELCTL_LOCK")
    monkeypatch.chdir(tmp_path)  # modelctl.lock is here
    assert not modelctl.download_plan().needs_download()


def test_listener_forms() -> None:
    seen: list[Event] = []
    as_listener(seen.append).on_event(SyncFinished(0, 0, 0, 0, 0.0, "/x"))
    assert len(seen) == 1
    with pytest.raises(TypeError, match="on_event"):
        as_listener(42)  # type: ignore[arg-type]


def test_proxies_choose_the_transport_like_the_cli() -> None:
    env = {"HTTPS_PROXY": "http://proxy:3128", "no_proxy": "localhost", "HOME": "/root"}
    assert proxies_of(env) == {"https": "http://proxy:3128", "no": "localhost"}
    assert isinstance(default_transport(proxies_of(env)), HttpxTransport)
    assert isinstance(default_transport(proxies_of({"HOME": "/root"})), StdlibTransport)
    assert proxies_of(os.environ) is not None
