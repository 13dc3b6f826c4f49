"""The click-free ``sync --frozen`` (modelctl.cli.main) says and exits exactly as click's.

Every argv below runs twice, as real processes: through ``main()`` as the console script
runs it, and with ``main(fast=False)``, which sends everything through click. Output and
exit code must match, and each run must have taken the way the case says (click
imported or not), so a regression of either the fast path or its fallback shows here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modelctl.cli import main
from tests.support.helpers import make_project, seeded_bytes

MANIFEST = """\
assets:
  a:
    repo: org/fast
    files: [w.safetensors, config.json]
"""

# Runs modelctl's main(), then writes to $FAST_ENTRY_PROBE whether click was imported.
SCRIPT = """
import os, sys
from modelctl.cli.main import main
code = main(sys.argv[2:], fast=sys.argv[1] == "fast")
with open(os.environ["FAST_ENTRY_PROBE"], "w") as f:
    f.write("click" if "click" in sys.modules else "no click")
sys.exit(code)
"""

# Seconds and rates differ between two runs; nothing else may.
_TIMING = re.compile(r"\d+(\.\d+)? (s|MB/s)\b")


def run(way: str, args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str, str]:
    probe = cwd / f"probe-{way}"
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, way, *args],
        env={**env, "FAST_ENTRY_PROBE": str(probe)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return r.returncode, _TIMING.sub("N", r.stdout), _TIMING.sub("N", r.stderr), probe.read_text()


@pytest.fixture
def synced(tmp_path: Path, hub_root: Path, hf_env: Path) -> Path:
    repos = {"org/fast": {"w.safetensors": seeded_bytes(7, 50_000), "config.json": b"{}"}}
    project = make_project(tmp_path / "p", hub_root, repos, MANIFEST)
    assert main(["sync", "--frozen", "-q", "-m", str(project.manifest)]) == 0
    return project.manifest.parent


def test_plain_frozen_sync_without_click_says_what_click_says(synced: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("MODELCTL_TARGET", None)
    lock = str(synced / "modelctl.lock")
    (synced / "a-folder").mkdir()
    (synced / "a-file").write_text("x")
    (synced / "bad.lock").write_text("version: 1\nassets: [\n")
    fast = [
        ["sync", "--frozen", "--offline", "-q", "--lockfile", lock],
        ["sync", "--frozen", "--offline", "--lockfile", lock],
        ["-q", "sync", "--offline", "--frozen", f"--lockfile={lock}"],
        ["--verbose", "sync", "--frozen", "--lockfile", lock, "--quiet"],
        ["sync", "--frozen", "--offline"],  # modelctl.lock found in the working folder
        ["sync", "--frozen", "--offline", "-m", str(synced / "modelctl.yaml")],
        ["sync", "--frozen", "--offline", "--lockfile", "missing.lock"],
        ["-v", "sync", "--frozen", "--offline", "--lockfile", "bad.lock"],
        ["sync", "--frozen", "--offline", "--lockfile", lock, "--target", "tree"],
    ]
    through_click = [
        ["sync", "--frozen", "--offline", "--lockfile", "a-folder"],  # click: a directory
        ["sync", "--frozen", "--offline", "--lockfile", lock, "--target", "a-file"],
        ["-q", "-v", "sync", "--frozen", "--lockfile", lock],
        ["sync", "--frozen", "--help"],
        ["sync", "--frozen", "--lockfile"],
        ["sync", "--frozen", "--lockfile", lock, "--lockfile", lock],
        ["sync", "--frozen", "--offline", "--nope", "--lockfile", lock],
        ["sync", "--offline", "-q", "--lockfile", lock, "--jobs", "2", "--frozen"],
        ["sync", "--frozen", "--offline", "--lockfile", "-q"],
        ["sync", "--frozen", "extra"],
        ["sync", "--locked", "--frozen", "--lockfile", lock],
        ["--version"],
    ]
    for args, way in [(a, "no click") for a in fast] + [(a, "click") for a in through_click]:
        code, out, err, probe = run("fast", args, env, synced)
        assert probe == way, (args, probe)
        assert run("click", args, env, synced)[:3] == (code, out, err), args
        assert "Traceback" not in err, (args, err)
    # The cases reach the outcomes they are meant to reach.
    assert run("fast", fast[0], env, synced)[:2] == (0, f"{synced.parent / 'hf-home' / 'hub'}\n")
    assert run("fast", fast[6], env, synced)[0] == 2  # no lockfile
    assert run("fast", fast[8], env, synced)[0] == 3  # offline, files missing in the tree
    assert run("fast", through_click[0], env, synced)[0] == 2  # click's usage error


def test_with_modelctl_target_set(synced: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env["MODELCTL_TARGET"] = str(synced / "tree")
    args = ["sync", "--frozen", "--offline", "--lockfile", str(synced / "modelctl.lock")]
    code, out, err, probe = run("fast", args, env, synced)
    assert probe == "no click"
    assert run("click", args, env, synced)[:3] == (code, out, err)
    assert code == 3 and str(synced / "tree") in err
