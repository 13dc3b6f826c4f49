"""The live progress display in a real terminal: tmux panes of 60 and 80 columns.

``modelctl sync`` runs in a detached tmux session against the local Hub (throttled, so
the display is live for a few seconds); the screen is read with ``capture-pane -J``,
which joins a wrapped line back into one: any line longer than the pane wrapped. A
wrapped aggregate line also breaks the cursor-up redraw, which leaves stale copies of
the bar on screen; so every screen must show at most one aggregate line.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelctl.cli import main
from modelctl.testing.hub import LocalHub
from tests.support.helpers import seeded_bytes, write_repo

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (.ci/run)")

MiB = 1024 * 1024
FILES = {
    "a-rather-long-folder-name/model-00001-of-00003.safetensors": seeded_bytes(1, 3 * MiB),
    "a-rather-long-folder-name/model-00002-of-00003.safetensors": seeded_bytes(2, 3 * MiB),
    "a-rather-long-folder-name/model-00003-of-00003.safetensors": seeded_bytes(3, 2 * MiB),
    "config.json": b"{}",
}
MANIFEST = (
    "assets:\n  speech-to-text-model:\n    repo: some-org/a-model-with-a-long-name\n"
    "    files: ['*.safetensors', config.json]\n"
)
REPO_ROOT = Path(__file__).resolve().parents[2]


def tmux(sock: Path, *args: str) -> str:
    out = subprocess.run(
        ["tmux", "-S", str(sock), *args], capture_output=True, text=True, check=True, timeout=10
    )
    return out.stdout


@pytest.mark.parametrize("width", [60, 80])
def test_progress_fits_the_terminal_and_redraws_in_place(
    width: int,
    tmp_path: Path,
    hub_root: Path,
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_repo(
        hub_root, "some-org/a-model-with-a-long-name", FILES, lfs_patterns=("*.safetensors",)
    )
    manifest = tmp_path / "modelctl.yaml"
    manifest.write_text(MANIFEST)
    monkeypatch.setenv("HF_ENDPOINT", local_hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert main(["lock", "-m", str(manifest)]) == 0
    capsys.readouterr()
    local_hub.faults.set(slow_bytes_per_sec=2 * MiB, paths=set(FILES))

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HF_ENDPOINT": local_hub.url,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONPATH": str(REPO_ROOT),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
    }
    sync = " ".join(
        shlex.quote(a) for a in [sys.executable, "-m", "modelctl", "sync", "-m", str(manifest)]
    )
    script = f"{sync}; echo EXIT=$?; sleep 60"
    sock = tmp_path / "tmux.sock"
    tmux(
        sock, "-f", "/dev/null", "new-session", "-d", "-x", str(width), "-y", "30",
        "env", "-i", *(f"{k}={v}" for k, v in env.items()), "bash", "-c", script,
    )  # fmt: skip
    try:
        screens = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            screen = tmux(sock, "capture-pane", "-p", "-J", "-t", "0")
            screens.append(screen)
            if "EXIT=" in screen:
                break
            time.sleep(0.1)
    finally:
        subprocess.run(["tmux", "-S", str(sock), "kill-server"], capture_output=True, check=False)

    final = screens[-1]
    assert "EXIT=0" in final, final
    live = [s for s in screens if "ETA" in s]
    assert len(live) >= 3, "the live display was seen while the sync ran"
    for screen in screens:
        lines = screen.splitlines()
        progress = [ln for ln in lines if not ln.startswith(("synced:", "/"))]
        too_long = [ln for ln in progress if len(ln) > width]
        assert not too_long, f"wrapped at {width} columns:\n{screen}"
        assert sum("ETA" in ln for ln in lines) <= 1, f"stale progress lines:\n{screen}"
    assert any(ln.startswith("[") and "files" in ln for s in live for ln in s.splitlines())
    assert "synced: 3 file(s) downloaded" in final or "synced: 4 file(s) downloaded" in final
