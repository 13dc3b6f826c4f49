"""huggingface_hub 2.x's shared Xet blob store, laid out by huggingface_hub's own code.

A Xet download lands in ``<cache>/blobs/<2 hex>/<xet hash>`` (a marker file, a ``.refs``
manifest beside each blob) and the repo's ``blobs/<etag>`` becomes a relative symlink
into it; a second repo with the same file links to the same store entry
(``huggingface_hub.utils._shared_blobs``). sync and status must take such files as
present, and gc must never delete a store entry: it removes repo links only, and leaves
reclaiming unreferenced store entries to huggingface_hub's own cache tools.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from huggingface_hub.utils import _shared_blobs as shared

from modelctl.cli import main
from modelctl.testing.hub import LocalHub
from tests.support.helpers import seeded_bytes, write_repo

XET_HASH = hashlib.sha256(b"a stand-in for the Xet file hash").hexdigest()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_sync_status_and_gc_understand_the_shared_xet_store(
    tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    data = seeded_bytes(11, 300_000)
    sha = hashlib.sha256(data).hexdigest()
    for repo in ("org/a", "org/b"):
        write_repo(hub_root, repo, {"model.bin": data}, lfs_patterns=("*.bin",))
    both = tmp_path / "both" / "modelctl.yaml"
    both.parent.mkdir()
    both.write_text(
        "assets:\n  a:\n    repo: org/a\n    files: [model.bin]\n"
        "  b:\n    repo: org/b\n    files: [model.bin]\n"
    )
    assert cli(capsys, "lock", "-m", str(both))[0] == 0
    assert cli(capsys, "sync", "-m", str(both))[0] == 0
    # Make it what huggingface_hub leaves after Xet downloads: the blob of org/a moved into
    # the shared store, org/b's blob a second link to the same entry.
    blob_a = hf_env / "models--org--a" / "blobs" / sha
    blob_b = hf_env / "models--org--b" / "blobs" / sha
    assert shared.publish_blob_to_shared_store(
        blob_path=str(blob_a), xet_hash=XET_HASH, cache_dir=hf_env, expected_size=len(data)
    )
    blob_b.unlink()
    assert shared.try_link_from_shared_store(
        blob_path=blob_b, xet_hash=XET_HASH, cache_dir=hf_env, expected_size=len(data)
    )
    store_entry = shared.shared_blob_path(hf_env, XET_HASH)
    assert blob_a.is_symlink() and blob_b.is_symlink() and store_entry.is_file()
    assert blob_a.resolve() == blob_b.resolve() == store_entry.resolve()

    # sync: present, verified by hashing once, nothing downloaded; status: ok.
    local_hub.clear_requests()
    code, _out, err = cli(capsys, "sync", "-m", str(both))
    assert code == 0, err
    assert local_hub.count("GET", "/resolve/") == 0 and local_hub.count("GET", "/blobs/") == 0
    assert blob_a.is_symlink() and blob_b.is_symlink()  # left as huggingface_hub made them
    code, out, err = cli(capsys, "status", "-m", str(both))
    assert code == 0, out + err
    code, _out, err = cli(capsys, "verify", "-m", str(both))
    assert code == 0, err

    # gc with only org/a locked, every repo in scope: org/b goes, the store entry stays.
    only_a = tmp_path / "a" / "modelctl.yaml"
    only_a.parent.mkdir()
    only_a.write_text("assets:\n  a:\n    repo: org/a\n    files: [model.bin]\n")
    assert cli(capsys, "lock", "-m", str(only_a))[0] == 0
    code, _out, err = cli(capsys, "gc", "-m", str(only_a), "--all-repos", "--delete")
    assert code == 0, err
    assert not (hf_env / "models--org--b").exists()
    assert store_entry.is_file() and blob_a.read_bytes() == data
    assert shared.is_shared_blobs_dir(hf_env / "blobs")  # marker and layout untouched
    assert cli(capsys, "verify", "-m", str(only_a))[0] == 0

    # A lock no longer naming the file: the repo's link goes, never the shared entry.
    only_a.write_text("assets:\n  a:\n    repo: org/a\n    files: [.gitattributes]\n")
    assert cli(capsys, "lock", "-m", str(only_a))[0] == 0
    code, _out, err = cli(capsys, "gc", "-m", str(only_a), "--delete")
    assert code == 0, err
    assert not blob_a.exists() and not blob_a.is_symlink()
    assert store_entry.is_file() and store_entry.read_bytes() == data
    # Unreferenced now: huggingface_hub's own cache tools are the ones to reclaim it.
    assert store_entry in shared.unreferenced_shared_blobs(hf_env)
