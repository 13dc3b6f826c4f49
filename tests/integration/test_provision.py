"""``modelctl.provision`` / ``modelctl.download_plan`` against the local Hub on loopback."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import modelctl
from modelctl.cli import main
from modelctl.errors import InputError, OfflineError, StaleLockError
from modelctl.progress import (
    DownloadPlanReady,
    Event,
    FileDone,
    LockStarted,
    LockWritten,
    SyncFinished,
)
from modelctl.provisioning import as_listener, proxies_of
from modelctl.runtime import LockedModels
from modelctl.transfer.http import HttpxTransport, StdlibTransport, default_transport
from tests.support.helpers import seeded_bytes, write_repo

MANIFEST = "assets:\n  m:\n    repo: org/m\n    files: [w.bin, cfg.json]\n"
W = seeded_bytes(1, 300_000)


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


def test_lock_mode_update_locks_a_fresh_project_first_like_uv_run(
    tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: object
) -> None:
    """Issue 24 item 3: a developer's first run, no lockfile yet."""
    write_repo(hub_root, "org/m", {"w.bin": W, "cfg.json": b"{}"}, lfs_patterns=("*.bin",))
    manifest = tmp_path / "fresh" / "modelctl.yaml"
    manifest.parent.mkdir()
    manifest.write_text(MANIFEST)
    lock_path = manifest.with_suffix(".lock")
    # The default stays strict (a deployed app never locks at start-up) ...
    with pytest.raises(StaleLockError, match="there is no lockfile"):
        modelctl.provision(manifest=manifest)
    with pytest.raises(StaleLockError, match="there is no lockfile"):
        modelctl.provision(manifest=manifest, lock_mode="locked")
    assert not lock_path.exists()

    # ... "update" locks first, writes the lockfile, then syncs with the same events.
    events: list[Event] = []
    models = modelctl.provision(manifest=manifest, lock_mode="update", listener=events.append)
    assert models.path("m", "w.bin").read_bytes() == W
    assert lock_path.exists() and models.lock_path == lock_path
    started, written, plan = events[:3]
    assert isinstance(started, LockStarted) and started.reason == "there is no lockfile"
    assert started.manifest == str(manifest)
    assert isinstance(written, LockWritten) and written.lock_path == str(lock_path)
    assert written.files == 2
    assert [e.to_json()["event"] for e in events[:2]] == ["lock_started", "lock_written"]
    assert isinstance(plan, DownloadPlanReady) and isinstance(events[-1], SyncFinished)
    assert sorted(e.file.filename for e in events if isinstance(e, FileDone)) == [
        "cfg.json",
        "w.bin",
    ]
    locked = lock_path.read_text()
    # The same lock `modelctl lock` writes; strict mode now accepts it.
    assert main(["lock", "--check", "-m", str(manifest)]) == 0
    assert modelctl.provision(manifest=manifest).path("m", "cfg.json").read_bytes() == b"{}"

    # Up to date: no lock events, no Hub metadata request, the lockfile untouched.
    n = len(local_hub.requests)  # type: ignore[attr-defined]
    again: list[Event] = []
    modelctl.provision(manifest=manifest, lock_mode="update", listener=again.append)
    assert not any(isinstance(e, (LockStarted, LockWritten)) for e in again)
    assert len(local_hub.requests) == n  # type: ignore[attr-defined]
    assert lock_path.read_text() == locked

    # Stale (the manifest changed): re-locked, and said why.
    manifest.write_text(MANIFEST.replace("[w.bin, cfg.json]", "[w.bin]"))
    stale: list[Event] = []
    models = modelctl.provision(manifest=manifest, lock_mode="update", listener=stale.append)
    assert isinstance(stale[0], LockStarted) and "does not match" in stale[0].reason
    assert isinstance(stale[1], LockWritten) and stale[1].files == 1
    assert models.files("m").keys() == {"w.bin"}


def test_lock_mode_update_finds_the_manifest_and_offline_never_connects(
    tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_repo(hub_root, "org/m", {"w.bin": W, "cfg.json": b"{}"}, lfs_patterns=("*.bin",))
    (tmp_path / "modelctl.yaml").write_text(MANIFEST)
    monkeypatch.chdir(tmp_path)
    n = len(local_hub.requests)  # type: ignore[attr-defined]
    with pytest.raises(OfflineError, match="offline"):
        modelctl.provision(lock_mode="update", offline=True)
    assert len(local_hub.requests) == n  # type: ignore[attr-defined]
    assert not (tmp_path / "modelctl.lock").exists()
    # modelctl.yaml found here, its lock written beside it.
    assert modelctl.provision(lock_mode="update").path("m", "w.bin").read_bytes() == W
    assert (tmp_path / "modelctl.lock").exists()
    with pytest.raises(ValueError, match="lock_mode must be"):
        modelctl.provision(lock_mode="write")  # type: ignore[arg-type]


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
    # http.client speaks to an http:// proxy itself (CONNECT tunnels for https targets) ...
    assert isinstance(default_transport(proxies_of(env)), StdlibTransport)
    # ... httpx2 takes over only for a proxy it cannot use.
    socks = {"ALL_PROXY": "socks5://proxy:1080", "HOME": "/root"}
    assert isinstance(default_transport(proxies_of(socks)), HttpxTransport)
    assert isinstance(default_transport(proxies_of({"HOME": "/root"})), StdlibTransport)
    assert proxies_of(os.environ) is not None


class _ForwardProxy(BaseHTTPRequestHandler):
    """A minimal HTTP forward proxy on loopback that records what went through it."""

    server: _ProxyServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)  # a proxy is sent the absolute URL
        self.server.seen.append(url.path)
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
        skip = {"proxy-connection", "connection", "host", "keep-alive"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
        conn.request("GET", url.path + (f"?{url.query}" if url.query else ""), headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in {"transfer-encoding", "connection", "content-length"}:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


class _ProxyServer(ThreadingHTTPServer):
    seen: list[str]


def test_provision_goes_through_a_configured_proxy(project: Path, local_hub: object) -> None:
    """HTTP_PROXY set: the download goes through the proxy, as with the CLI."""
    proxy = _ProxyServer(("127.0.0.1", 0), _ForwardProxy)
    proxy.seen = []
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["HTTP_PROXY"] = f"http://127.0.0.1:{proxy.server_address[1]}"
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
        code = (
            "import sys, modelctl\n"
            "m = modelctl.provision(sys.argv[1])\n"
            "print(m.path('m', 'w.bin'))\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(project.with_suffix(".lock"))],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert Path(out.strip()).read_bytes() == W
    assert sorted(p.rsplit("/", 1)[-1] for p in proxy.seen if "/resolve/" in p) == [
        "cfg.json",
        "w.bin",
    ]
