"""A hostile Hub: values a server sends are checked where they enter, before they name
anything on disk.

The commit a Hub reports becomes the folder ``snapshots/<commit>`` and the content of
``refs/<branch>``; a server answering ``"sha": "../../../.."`` must not make sync write
beside the cache. Every case here leaves the whole HF_HOME parent as it was, and exits 2.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelctl.errors import EXIT_INPUT, UnsafePathError
from modelctl.store import HfCacheStore
from modelctl.testing.hub import LocalHub
from modelctl.types import FileRef, is_commit
from tests.fault_report import REPORT
from tests.faults.common import run_cli
from tests.helpers import blob, write_repo

pytestmark = pytest.mark.faults

MANIFEST = """\
assets:
  net:
    repo: org/t
    files: [model.bin, config.json]
"""

HOSTILE_SHAS = [
    "../../../..",
    "../../../../X",
    "../../..",
    "/tmp/x",
    "a" * 39,
    "A" * 40,
    "a" * 41,
    "abc",
    "",
    12345,
    None,
    ["a" * 40],
    "a" * 40 + "/../../..",
    "0" * 40 + "\n",
]


def snapshot_tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("sha", HOSTILE_SHAS, ids=repr)
def test_a_hostile_commit_id_is_refused_before_anything_is_written(
    sha: object,
    tmp_path: Path,
    hub_root: Path,
    hf_env: Path,
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_repo(
        hub_root,
        "org/t",
        {"model.bin": blob(1, 4096), "config.json": b"{}"},
        lfs_patterns=("*.bin",),
    )
    proj = tmp_path / "proj"
    proj.mkdir()
    manifest = proj / "modelctl.yaml"
    manifest.write_text(MANIFEST)
    # The whole folder HF_HOME lives in: "../../../.." from a snapshot folder reaches here.
    home_parent = hf_env.parent.parent
    before = snapshot_tree(home_parent)
    local_hub.faults.set(repo_info_patch={"sha": sha})
    REPORT.add("bad_inputs")

    # No lockfile: sync re-locks in memory first, which is where the sha used to slip in.
    code, _out, err = run_cli(capsys, "sync", "-m", str(manifest), "-q")
    assert code == EXIT_INPUT, err
    assert "commit" in err and "Traceback" not in err
    code, _out, err = run_cli(capsys, "lock", "-m", str(manifest))
    assert code == EXIT_INPUT, err
    code, _out, err = run_cli(capsys, "plan", "-m", str(manifest))
    assert code == EXIT_INPUT, err

    assert not (proj / "modelctl.lock").exists()
    assert snapshot_tree(home_parent) == before, "something was written for a hostile commit"


def test_a_hostile_commit_after_a_good_lock_is_refused_too(
    tmp_path: Path,
    hub_root: Path,
    hf_env: Path,
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A stale lock makes sync re-lock; the new answer is checked like the first one."""
    write_repo(hub_root, "org/t", {"model.bin": blob(2, 4096), "config.json": b"{}"})
    proj = tmp_path / "proj"
    proj.mkdir()
    manifest = proj / "modelctl.yaml"
    manifest.write_text(MANIFEST)
    assert run_cli(capsys, "lock", "-m", str(manifest))[0] == 0
    good = (proj / "modelctl.lock").read_bytes()
    manifest.write_text(MANIFEST.replace("config.json]", "config.json, '*.json']"))
    local_hub.faults.set(repo_info_patch={"sha": "../../../../X"})
    code, _out, err = run_cli(capsys, "sync", "-m", str(manifest), "-q")
    assert code == EXIT_INPUT, err
    assert (proj / "modelctl.lock").read_bytes() == good
    assert not (hf_env.parent.parent / "X").exists()
    assert not list(hf_env.rglob("refs/*")), "no ref may be written from a refused answer"


@pytest.mark.parametrize("commit", ["../../../..", "../x", "A" * 40, "a" * 41, ""])
def test_the_cache_store_refuses_a_commit_that_is_not_a_commit_id(
    commit: str, tmp_path: Path
) -> None:
    """The last line, whoever hands the store a ref: no path is built from a bad commit."""
    from modelctl.digest import Digest

    store = HfCacheStore(tmp_path / "cache")
    ref = FileRef("a", "model", "org/t", commit, "x.bin", 3, Digest("gitsha1", "1" * 40), "file")
    with pytest.raises(UnsafePathError):
        store.final_path(ref)
    with pytest.raises(UnsafePathError):
        store.set_ref("model", "org/t", "main", commit)
    assert not os.path.exists(tmp_path / "cache")


def test_is_commit_accepts_exactly_forty_lower_case_hex() -> None:
    assert is_commit("0123456789abcdef0123456789abcdef01234567")
    for bad in ("0123456789ABCDEF0123456789abcdef01234567", "g" * 40, "a" * 40 + "\n", 1, None):
        assert not is_commit(bad)
