"""A hostile Hub: values a server sends are checked where they enter, before they name
anything on disk.

The commit a Hub reports becomes the folder ``snapshots/<commit>`` and the content of
``refs/<branch>``; a server answering ``"sha": "../../../.."`` must not make sync write
beside the cache. Every case here leaves the whole HF_HOME parent as it was, and exits 3
(a malformed answer from the server).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from modelctl.errors import EXIT_INPUT, EXIT_NETWORK, UnsafePathError
from modelctl.lock.types import FileRef, is_commit
from modelctl.store.layout import HfCacheStore
from modelctl.testing.hub import LocalHub
from tests.support.fault_report import REPORT
from tests.support.helpers import cli_in_process, lock_text, seeded_bytes, write_repo

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
        {"model.bin": seeded_bytes(1, 4096), "config.json": b"{}"},
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
    code, _out, err = cli_in_process(capsys, "sync", "-m", str(manifest), "-q")
    assert code == EXIT_NETWORK, err
    assert "commit" in err and "Traceback" not in err
    code, _out, err = cli_in_process(capsys, "lock", "-m", str(manifest))
    assert code == EXIT_NETWORK, err
    code, _out, err = cli_in_process(capsys, "plan", "-m", str(manifest))
    assert code == EXIT_NETWORK, err

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
    write_repo(hub_root, "org/t", {"model.bin": seeded_bytes(2, 4096), "config.json": b"{}"})
    proj = tmp_path / "proj"
    proj.mkdir()
    manifest = proj / "modelctl.yaml"
    manifest.write_text(MANIFEST)
    assert cli_in_process(capsys, "lock", "-m", str(manifest))[0] == 0
    good = (proj / "modelctl.lock").read_bytes()
    manifest.write_text(MANIFEST.replace("config.json]", "config.json, '*.json']"))
    local_hub.faults.set(repo_info_patch={"sha": "../../../../X"})
    code, _out, err = cli_in_process(capsys, "sync", "-m", str(manifest), "-q")
    assert code == EXIT_NETWORK, err
    assert (proj / "modelctl.lock").read_bytes() == good
    assert not (hf_env.parent.parent / "X").exists()
    assert not list(hf_env.rglob("refs/*")), "no ref may be written from a refused answer"


@pytest.mark.parametrize("commit", ["../../../..", "../x", "A" * 40, "a" * 41, ""])
def test_the_cache_store_refuses_a_commit_that_is_not_a_commit_id(
    commit: str, tmp_path: Path
) -> None:
    """The last line, whoever hands the store a ref: no path is built from a bad commit."""
    from modelctl.lock.digest import Digest

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


# ------------------------------------------------------------------ malformed repo metadata

GOOD_SHA = "c" * 40
DEEP = b"[" * 100_000 + b"]" * 100_000


def _body(**info: object) -> bytes:
    return json.dumps({"id": "org/t", "sha": GOOD_SHA} | info).encode()


def _sib(**fields: object) -> dict[str, object]:
    return {"rfilename": "model.bin", "size": 4096} | fields


MALFORMED_BODIES = {
    "not JSON": b"<html>gateway timeout</html>",
    "empty": b"",
    "truncated": _body(siblings=[_sib()])[:-7],
    "nested 100,000 deep": DEEP,
    "a list": b"[]",
    "a string": b'"hello"',
    "latin-1": b'{"sha": "\xff"}',
    "huge integer": b'{"sha": ' + b"9" * 5000 + b"}",
    "siblings a string": _body(siblings="model.bin"),
    "siblings a dict": _body(siblings={"rfilename": "model.bin"}),
    "no siblings": _body(),
    "sibling a string": _body(siblings=["model.bin"]),
    "no rfilename": _body(siblings=[{"size": 3}]),
    "integer rfilename": _body(siblings=[_sib(rfilename=7)]),
    "empty rfilename": _body(siblings=[_sib(rfilename="")]),
    "path over 1024 characters": _body(siblings=[_sib(rfilename="a/" * 600 + "model.bin")]),
    "lfs a string": _body(siblings=[_sib(lfs="sha256")]),
    "lfs a list": _body(siblings=[_sib(lfs=[1])]),
    "size -5": _body(siblings=[_sib(size=-5)]),
    "size 1e30": _body(siblings=[_sib(size=1e30)]),
    "size a string": _body(siblings=[_sib(size="12")]),
    "size true": _body(siblings=[_sib(size=True)]),
    "size 12.5": _body(siblings=[_sib(size=12.5)]),
    "lfs size -1": _body(siblings=[_sib(lfs={"size": -1, "sha256": "a" * 64})]),
    "lfs size disagrees": _body(siblings=[_sib(size=4096, lfs={"size": 9, "sha256": "a" * 64})]),
    "one path twice, two sizes": _body(siblings=[_sib(), _sib(size=5)]),
    "a file that is also a folder": _body(siblings=[_sib(), _sib(rfilename="model.bin/x")]),
    "sha upper case": json.dumps({"sha": GOOD_SHA.upper(), "siblings": []}).encode(),
    "sha an integer": b'{"sha": 1234, "siblings": []}',
}


@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
def test_malformed_repo_metadata_is_one_clear_error_and_no_lock(
    body: bytes,
    tmp_path: Path,
    hub_root: Path,
    hf_env: Path,
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_repo(hub_root, "org/t", {"model.bin": seeded_bytes(3, 4096), "config.json": b"{}"})
    manifest = tmp_path / "modelctl.yaml"
    manifest.write_text("assets:\n  net:\n    repo: org/t\n    files: ['*.bin']\n")
    local_hub.faults.set(repo_info_body=body)
    REPORT.add("bad_inputs")
    for command in ("lock", "sync", "plan"):
        code, _out, err = cli_in_process(capsys, command, "-m", str(manifest))
        assert code == EXIT_NETWORK, f"{command}: {err}"
        assert ("org/t@main" in err and "malformed" in err) or "larger" in err, err
        assert "Traceback" not in err
    assert not (tmp_path / "modelctl.lock").exists()
    assert not hf_env.exists() or not list(hf_env.rglob("snapshots/*"))


def test_a_mirror_without_lfs_sha256_locks_through_head(
    tmp_path: Path,
    hub_root: Path,
    hf_env: Path,
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Missing metadata is not malformed (huggingface_hub raises KeyError here): the digest
    comes from a HEAD instead, and the lock holds the real sha256."""
    data = seeded_bytes(4, 4096)
    write_repo(hub_root, "org/t", {"model.bin": data}, lfs_patterns=("*.bin",))
    manifest = tmp_path / "modelctl.yaml"
    manifest.write_text("assets:\n  net:\n    repo: org/t\n    files: [model.bin]\n")
    snap_sha = local_hub_commit(local_hub, "org/t")
    siblings = [{"rfilename": "model.bin", "size": 4096, "lfs": {"size": 4096}}]
    local_hub.faults.set(repo_info_patch={"sha": snap_sha, "siblings": siblings})
    code, _out, err = cli_in_process(capsys, "lock", "-m", str(manifest))
    assert code == 0, err
    assert f"sha256:{hashlib.sha256(data).hexdigest()}" in (tmp_path / "modelctl.lock").read_text()


def local_hub_commit(hub: LocalHub, repo_id: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"{hub.url}/api/models/{repo_id}") as resp:
        sha = json.load(resp)["sha"]
    assert isinstance(sha, str)
    return sha


@pytest.mark.parametrize("linked_size", ["-7", "1e30", "99999999999999999999999"])
def test_an_impossible_size_from_the_head_fallback_is_refused(
    linked_size: str,
    tmp_path: Path,
    hub_root: Path,
    hf_env: Path,
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_repo(hub_root, "org/t", {"model.bin": seeded_bytes(5, 4096)}, lfs_patterns=("*.bin",))
    manifest = tmp_path / "modelctl.yaml"
    manifest.write_text("assets:\n  net:\n    repo: org/t\n    files: [model.bin]\n")
    local_hub.faults.set(omit_metadata=True, linked_size=linked_size)
    REPORT.add("bad_inputs")
    code, _out, err = cli_in_process(capsys, "lock", "-m", str(manifest))
    if linked_size == "1e30":
        # Not a number at all: huggingface_hub reads it as "unknown", like a mirror that
        # sends no size; the lock says null and sync bounds the download by the digest.
        assert code == 0, err
        assert "size: null" in (tmp_path / "modelctl.lock").read_text()
        return
    assert code == EXIT_NETWORK, err
    assert "impossible file size" in err and "Traceback" not in err
    assert not (tmp_path / "modelctl.lock").exists()


def test_a_pinned_commit_is_enforced_when_relocking(
    tmp_path: Path,
    hub_root: Path,
    hf_env: Path,
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Re-locking asks for /revision/<locked commit>; another commit in the answer is
    refused instead of silently moving the lock."""
    write_repo(hub_root, "org/t", {"model.bin": seeded_bytes(6, 4096), "config.json": b"{}"})
    manifest = tmp_path / "modelctl.yaml"
    manifest.write_text(MANIFEST)
    assert cli_in_process(capsys, "lock", "-m", str(manifest))[0] == 0
    before = (tmp_path / "modelctl.lock").read_bytes()
    commit = local_hub_commit(local_hub, "org/t")
    local_hub.faults.set(repo_info_patch={"sha": "d" * 40})
    code, _out, err = cli_in_process(capsys, "lock", "-m", str(manifest))
    assert code == EXIT_NETWORK, err
    assert "another commit than the one pinned" in err
    assert (tmp_path / "modelctl.lock").read_bytes() == before
    # A commit pinned in the manifest itself is held to the same rule.
    (tmp_path / "modelctl.lock").unlink()
    manifest.write_text(MANIFEST.replace("repo: org/t", f"repo: org/t\n    revision: {commit}"))
    code, _out, err = cli_in_process(capsys, "lock", "-m", str(manifest))
    assert code == EXIT_NETWORK, err
    local_hub.faults.reset()
    assert cli_in_process(capsys, "lock", "-m", str(manifest))[0] == 0


def test_numbers_python_cannot_hold_are_input_errors(
    tmp_path: Path, hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = "9" * 5000
    manifest = tmp_path / "modelctl.yaml"
    manifest.write_text(f"version: {huge}\nassets: {{}}\n")
    code, _out, err = cli_in_process(capsys, "lock", "-m", str(manifest))
    assert code == EXIT_INPUT and "Traceback" not in err, err
    lock = tmp_path / "x.lock"
    lock.write_text(lock_text().replace("size: 3", f"size: {huge}"))
    code, _out, err = cli_in_process(capsys, "verify", "--lockfile", str(lock))
    assert code == EXIT_INPUT and "Traceback" not in err, err
    REPORT.add("bad_inputs", 2)


@pytest.mark.parametrize(
    "path", ["a" * 256, "dir/" + "é" * 128, "x/" * 520 + "y"], ids=["256 bytes", "256 utf8", "1041"]
)
def test_paths_no_disk_or_lock_can_hold_are_refused(
    path: str,
    tmp_path: Path,
    hub_root: Path,
    hf_env: Path,
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_repo(hub_root, "org/t", {"model.bin": seeded_bytes(7, 64)})
    manifest = tmp_path / "modelctl.yaml"
    manifest.write_text("assets:\n  net:\n    repo: org/t\n    files: ['*']\n")
    siblings = [{"rfilename": path, "size": 1, "blobId": "1" * 40}]
    local_hub.faults.set(repo_info_patch={"siblings": siblings})
    REPORT.add("bad_inputs")
    code, _out, err = cli_in_process(capsys, "lock", "-m", str(manifest))
    assert code in (EXIT_INPUT, EXIT_NETWORK), err
    assert "Traceback" not in err
    assert not (tmp_path / "modelctl.lock").exists()
