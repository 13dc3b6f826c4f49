"""Issue 24 item 2: every locked file has a SHA-256 (regular files too, hashed at lock
time), the CycloneDX SBOM gives it for every component, and older locks still work."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import yaml
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from modelctl.cli import main
from modelctl.lock import lockfile
from modelctl.testing.hub import LocalHub
from tests.support.helpers import seeded_bytes, write_repo

FILES = {
    "model.onnx": seeded_bytes(1, 5000),  # LFS
    "config.json": b'{"hidden": 64}',  # regular
    "tokenizer.json": b'{"tok": true}',  # regular
    "empty.txt": b"",  # regular, empty
}
MANIFEST = "assets:\n  m:\n    repo: org/m\n    files: ['*.onnx', '*.json', empty.txt]\n"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def project(tmp_path: Path, hf_env: Path, hub_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_repo(hub_root, "org/m", FILES, lfs_patterns=("*.onnx",))
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "modelctl.yaml").write_text(MANIFEST)
    monkeypatch.chdir(folder)
    return folder


def lock_entries(folder: Path) -> dict[str, dict[str, object]]:
    data = yaml.safe_load((folder / "modelctl.lock").read_text())
    files = data["assets"]["m"]["sources"][0]["files"]
    return {f["path"]: f for f in files}


def test_every_locked_file_has_its_sha256_and_the_sbom_gives_it(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "lock")[0] == 0
    entries = lock_entries(project)
    for path, data in FILES.items():
        e = entries[path]
        if path == "model.onnx":
            assert e["digest"] == sha256(data) and "sha256" not in e  # no duplicate
        else:
            assert str(e["digest"]).startswith("gitsha1:")
            assert e["sha256"] == sha256(data), path

    code, out, _ = run(capsys, "export", "--format", "cyclonedx")
    assert code == 0
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(out) is None
    for c in json.loads(out)["components"]:
        assert c["hashes"] == [{"alg": "SHA-256", "content": sha256(FILES[c["name"]])[7:]}]
        props = {p["name"]: p["value"] for p in c["properties"]}
        if c["name"] == "model.onnx":
            assert "modelctl:git_blob" not in props
        else:  # the git blob id is kept, as a property
            blob_id = str(entries[c["name"]]["digest"]).removeprefix("gitsha1:")
            assert props["modelctl:git_blob"] == blob_id


def test_relock_reuses_known_sha256s_without_downloading(
    project: Path, local_hub: LocalHub, capsys: pytest.CaptureFixture[str]
) -> None:
    local_hub.clear_requests()
    assert run(capsys, "lock")[0] == 0
    assert local_hub.count("GET", "/resolve/") == 3  # the three regular files, once
    local_hub.clear_requests()
    assert run(capsys, "lock", "--upgrade")[0] == 0  # same blob ids: nothing downloaded
    assert local_hub.count("GET", "/resolve/") == 0


def test_an_old_lock_without_sha256_syncs_verifies_and_is_upgraded_by_lock(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "lock")[0] == 0
    new_text = (project / "modelctl.lock").read_text()
    old_text = re.sub(r"(?m)^ *sha256: sha256:[0-9a-f]{64}\n", "", new_text)
    assert old_text != new_text and "sha256: sha256:" not in old_text
    (project / "modelctl.lock").write_text(old_text)

    assert lockfile.load(project / "modelctl.lock")  # still reads
    assert run(capsys, "sync", "--frozen")[0] == 0  # verified by the git blob id
    assert run(capsys, "verify", "--full")[0] == 0
    assert (project / "modelctl.lock").read_text() == old_text  # --frozen writes nothing

    assert run(capsys, "lock", "--check")[0] == 0  # not stale: the manifest is the same
    assert run(capsys, "lock")[0] == 0  # fills in the missing SHA-256s
    assert (project / "modelctl.lock").read_text() == new_text


def test_a_mirror_serving_other_bytes_for_a_regular_file_is_refused_at_lock(
    project: Path, local_hub: LocalHub, capsys: pytest.CaptureFixture[str]
) -> None:
    local_hub.faults.set(wrong_bytes=True, paths={"config.json"})
    code, _, err = run(capsys, "lock")
    assert code == 4, err
    assert "org/m@" in err and ":config.json" in err
    assert "do not match the digest" in err
    assert not (project / "modelctl.lock").exists()
