"""Files modelctl creates get 0o666 minus the umask (0644 under 022), never mkstemp's 0600.

A Docker runtime stage usually runs as another user than the build stage that ran
`modelctl lock` and `modelctl sync`: it must be able to read the lock and the files.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelctl.cli import main
from modelctl.testing.hub import LocalHub
from tests.support.helpers import seeded_bytes, write_repo

MANIFEST = """\
assets:
  weights:
    repo: org/w
    files: [model.bin, config.json]
  data:
    repo: org/d
    repo_type: dataset
    files: [rows.csv]
"""
OTHER_USER = "nobody"
RUNTIME_SCRIPT = """\
import sys
from modelctl.runtime import open_lock
models = open_lock(target=sys.argv[1])
print(sorted(models.files("weights")), sorted(models.files("data")))
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def shared(hub_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder another user can enter (pytest's tmp_path is private to root), umask 022."""
    base = Path(tempfile.mkdtemp(prefix="modelctl-modes-"))
    base.chmod(0o755)
    old = os.umask(0o022)
    try:
        yield base
    finally:
        os.umask(old)
        subprocess.run(["rm", "-rf", str(base)], check=True)


@pytest.fixture
def repos(hub_root: Path) -> None:
    write_repo(hub_root, "org/w", {"model.bin": seeded_bytes(7, 20_000), "config.json": b"{}"})
    write_repo(hub_root / "@datasets", "org/d", {"rows.csv": b"a,b\n1,2\n"})


def test_lock_records_synced_files_bundle_and_refs_are_0644(
    shared: Path, hf_env: Path, repos: None, local_hub: LocalHub
) -> None:
    manifest = shared / "modelctl.yaml"
    manifest.write_text(MANIFEST)
    lock = manifest.with_suffix(".lock")
    tree = shared / "tree"
    assert main(["lock", "-m", str(manifest)]) == 0
    assert main(["sync", "-m", str(manifest), "--target", str(tree), "-q"]) == 0
    assert main(["sync", "-m", str(manifest), "-q"]) == 0
    assert main(["bundle", str(shared / "models.tar"), "-m", str(manifest)]) == 0

    assert mode(lock) == 0o644
    assert mode(shared / "models.tar") == 0o644
    synced = [tree / "weights" / "model.bin", tree / "weights" / "config.json"]
    synced.append(tree / "data" / "rows.csv")
    blobs = sorted(hf_env.glob("*--*/blobs/*"))
    records = sorted(tree.glob(".modelctl/verified/**/*.json"))
    records += sorted(hf_env.glob("*--*/.modelctl/verified/*.json"))
    refs = sorted(hf_env.glob("*--*/refs/main"))
    assert len(blobs) == 3 and len(records) == 6 and len(refs) == 2
    for path in [*synced, *blobs, *records, *refs]:
        assert mode(path) == 0o644, path


def interpreter_for(user: pwd.struct_passwd) -> str | None:
    """A Python of this version that ``user`` may run (the venv's may live in a private
    home, such as pyenv's under /root); the venv's packages are put on its path."""
    candidates = dict.fromkeys(
        [os.path.realpath(sys.executable), shutil.which("python3") or "", "/usr/bin/python3"]
    )
    want = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for exe in filter(None, candidates):
        try:
            r = subprocess.run(
                [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                user=user.pw_uid,
                group=user.pw_gid,
                extra_groups=[],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except OSError:
            continue
        if r.returncode == 0 and r.stdout.strip() == want:
            return exe
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
def test_another_user_opens_the_lock_through_the_runtime(
    shared: Path, hf_env: Path, repos: None, local_hub: LocalHub
) -> None:
    manifest = shared / "modelctl.yaml"
    manifest.write_text(MANIFEST)
    tree = shared / "tree"
    assert main(["lock", "-m", str(manifest)]) == 0
    assert main(["sync", "-m", str(manifest), "--target", str(tree), "-q"]) == 0
    other = pwd.getpwnam(OTHER_USER)
    python = interpreter_for(other)
    if python is None:
        pytest.skip(f"no Python {sys.version_info[:2]} that {OTHER_USER} may run")
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[2]), sysconfig.get_paths()["purelib"]]
        ),
        "MODELCTL_LOCK": str(manifest.with_suffix(".lock")),
        "HOME": str(shared),
    }
    r = subprocess.run(
        [python, "-c", RUNTIME_SCRIPT, str(tree)],
        user=other.pw_uid,
        group=other.pw_gid,
        extra_groups=[],
        env=env,
        cwd=shared,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["['config.json',", "'model.bin']", "['rows.csv']"]
