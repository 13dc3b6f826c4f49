"""The click-free ``sync --frozen`` (modelctl.cli.main) says and exits exactly as click's.

Every argv below runs twice, as real processes: through ``main()`` as the console script
runs it, and with ``main(fast=False)``, which sends everything through click. Output and
exit code must match, and each run must have taken the way the case says (click
imported or not), so a regression of either the fast path or its fallback shows here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


GLOBAL = ["-q", "--quiet", "-v", "--verbose"]
SYNC_OPTIONS = [
    ["--offline"],
    ["-q"],
    ["--quiet"],
    ["--lockfile", "modelctl.lock"],
    ["--lockfile=modelctl.lock"],
    ["--lockfile", "missing.lock"],
    ["-m", "modelctl.yaml"],
    ["--manifest", "modelctl.yaml"],
    ["--target", "tree"],
    ["--target=tree"],
    ["--jobs", "2"],
    ["--help"],
    ["-mmodelctl.yaml"],
    ["--lockfile"],
    ["extra"],
    ["--lockfile", "-q"],
    ["--lockfile", "tree"],  # a folder: click's usage error
    ["--target", "modelctl.lock"],  # a file: click's usage error
    ["--frozen"],
    ["--locked"],
]


@st.composite
def sync_argv(draw: st.DrawFn) -> list[str]:
    """``[global flags] sync [options]``, --frozen mostly among them, in any order; or,
    now and then, the same words shuffled."""
    head = draw(st.lists(st.sampled_from(GLOBAL), max_size=2))
    options = draw(st.lists(st.sampled_from(SYNC_OPTIONS), max_size=4))
    if draw(st.integers(0, 4)):
        options.append(["--frozen"])
    options = draw(st.permutations(options))
    args = [*head, "sync", *(word for option in options for word in option)]
    return draw(st.permutations(args)) if not draw(st.integers(0, 5)) else args


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(args=sync_argv())
def test_any_argv_gives_the_same_outcome_both_ways(
    synced: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:
    """In process, for argv drawn from sync's vocabulary (a plain frozen sync or not):
    main() and main(fast=False) return the same code and print the same text. Each runs
    in its own copy of the project (click may take "--frozen" as --lockfile's value and
    write that lockfile)."""
    monkeypatch.delenv("MODELCTL_TARGET", raising=False)
    if not (synced / "tree").exists():  # a synced --target tree too, so no run downloads
        monkeypatch.chdir(synced)
        assert main(["sync", "--frozen", "-q", "--target", "tree"]) == 0
    capsys.readouterr()
    outcomes = []
    for fast in (True, False):
        copy = Path(tempfile.mkdtemp(dir=synced.parent)) / "p"
        shutil.copytree(synced, copy, symlinks=True)
        monkeypatch.chdir(copy)
        code = main(list(args), fast=fast)
        out, err = (_TIMING.sub("N", s).replace(str(copy), "P") for s in capsys.readouterr())
        outcomes.append((code, out, err))
    assert outcomes[0] == outcomes[1]
