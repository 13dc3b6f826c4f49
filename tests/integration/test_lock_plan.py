"""`modelctl lock` and `modelctl plan` against the real local Hub server."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import huggingface_hub as hf
import pytest

from modelctl.cli import main
from modelctl.lock import lockfile
from modelctl.testing.hub import LocalHub
from tests.support.helpers import seeded_bytes, write_repo

MiB = 1024 * 1024


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def gitsha1(data: bytes) -> str:
    return "gitsha1:" + hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture
def repos(hub_root: Path) -> dict[str, dict[str, bytes]]:
    """Repos for every preset; .onnx/.gguf/.bin are LFS via .gitattributes."""
    lfs = ("*.onnx", "*.gguf", "*.bin")
    content = {
        "org/whisper": {
            "model.bin": seeded_bytes(1, 3000),
            "config.json": b'{"a": 1}',
            "vocab.json": b"{}",
            "README.md": b"# whisper",
        },
        "org/llm-GGUF": {
            "llm-q4.gguf": seeded_bytes(2, 5000),
            "llm-q8.gguf": seeded_bytes(3, 7000),
        },
        "org/llm": {
            "tokenizer.json": b'{"tok": true}',
            "tokenizer_config.json": b"{}",
            "model.safetensors": seeded_bytes(4, 100),
        },
        "onnx-community/Kokoro-82M-v1.0-ONNX": {
            "onnx/model_quantized.onnx": seeded_bytes(5, 4000),
            "onnx/model.onnx": seeded_bytes(6, 9000),
            "tokenizer.json": b'{"kokoro": 1}',
            "voices/af_heart.bin": seeded_bytes(7, 1024),
            "voices/af_bella.bin": seeded_bytes(8, 1024),
            "voices/am_adam.bin": seeded_bytes(9, 1024),
        },
        "org/big": {"weights.dat": seeded_bytes(10, 11 * MiB)},  # LFS by size (>= 10 MiB)
    }
    for repo_id, files in content.items():
        write_repo(hub_root, repo_id, files, lfs_patterns=lfs)
    return content


MANIFEST = """\
assets:
  stt:
    kind: stt
    repo: org/whisper
    files: [model.bin, "*.json"]
  llm:
    kind: gguf
    repo: org/llm-GGUF
    file: llm-q4.gguf
    tokenizer:
      repo: org/llm
  tts:
    kind: kokoro
    voices: [af_heart, af_bella]
  big:
    repo: org/big
    files: [weights.dat]
  cloud:
    kind: api
    provider: somebody
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def project(tmp_path: Path, hf_env: Path, repos: dict[str, dict[str, bytes]]) -> Path:
    manifest = tmp_path / "proj" / "modelctl.yaml"
    manifest.parent.mkdir()
    manifest.write_text(MANIFEST)
    return manifest


EXPECTED_FILES = {
    ("stt", "org/whisper", "model.bin"),
    ("stt", "org/whisper", "config.json"),
    ("stt", "org/whisper", "vocab.json"),
    ("llm", "org/llm-GGUF", "llm-q4.gguf"),
    ("llm", "org/llm", "tokenizer.json"),
    ("llm", "org/llm", "tokenizer_config.json"),
    ("tts", "onnx-community/Kokoro-82M-v1.0-ONNX", "onnx/model_quantized.onnx"),
    ("tts", "onnx-community/Kokoro-82M-v1.0-ONNX", "tokenizer.json"),
    ("tts", "onnx-community/Kokoro-82M-v1.0-ONNX", "voices/af_heart.bin"),
    ("tts", "onnx-community/Kokoro-82M-v1.0-ONNX", "voices/af_bella.bin"),
    ("big", "org/big", "weights.dat"),
}
LFS_NAMES = {
    "model.bin",
    "llm-q4.gguf",
    "onnx/model_quantized.onnx",
    "voices/af_heart.bin",
    "voices/af_bella.bin",
    "weights.dat",
}


def test_lock_records_commit_size_and_digest_for_every_preset(
    project: Path,
    repos: dict[str, dict[str, bytes]],
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "lock", "-m", str(project))
    assert code == 0, err
    lock = lockfile.load(project.with_suffix(".lock"))
    refs = list(lock.files())
    assert {(r.asset, r.repo_id, r.path) for r in refs} == EXPECTED_FILES
    for r in refs:
        data = repos[r.repo_id][r.path]
        assert r.commit == local_hub.commit_of(r.repo_id)
        assert r.size == len(data)
        want = sha256(data) if r.path in LFS_NAMES else gitsha1(data)
        assert str(r.digest) == want, r.path
    roles = {(r.asset, r.path): r.role for r in refs}
    assert roles[("llm", "llm-q4.gguf")] == "model"
    assert roles[("llm", "tokenizer.json")] == "tokenizer"
    assert roles[("tts", "voices/af_heart.bin")] == "voice"
    assert roles[("stt", "config.json")] == "file"
    assert lock.asset("cloud") is not None and not list(lock.asset("cloud").sources)  # type: ignore[union-attr]
    # Per (repo, revision): the repo info (the commit) and one page of the tree listing.
    assert local_hub.count(path_contains="/api/") == 2 * 5
    # Regular (non-LFS) files are downloaded to record their SHA-256, once per content
    # (git blob id); no HEADs.
    regular = {r.digest for r in refs if r.path not in LFS_NAMES}
    assert local_hub.count("GET", "/resolve/") == len(regular)
    assert local_hub.count("HEAD") == 0
    for a in lock.assets:
        for s in a.sources:
            for f in s.files:
                assert f.content_sha256 is not None
                assert str(f.content_sha256) == sha256(repos[s.repo_id][f.path])


def test_lock_is_byte_identical_across_runs(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lock_path = project.with_suffix(".lock")
    assert run(capsys, "lock", "-m", str(project))[0] == 0
    first = lock_path.read_bytes()
    code, out, _ = run(capsys, "lock", "-m", str(project))
    assert code == 0 and "unchanged" in out
    lock_path.unlink()
    assert run(capsys, "lock", "-m", str(project))[0] == 0
    assert lock_path.read_bytes() == first
    assert first.startswith(b"# This file is generated by `modelctl lock`")


def test_relock_keeps_commits_unless_upgraded(
    project: Path, hub_root: Path, local_hub: LocalHub, capsys: pytest.CaptureFixture[str]
) -> None:
    lock_path = project.with_suffix(".lock")
    assert run(capsys, "lock", "-m", str(project))[0] == 0
    old = local_hub.commit_of("org/whisper")
    old_llm = local_hub.commit_of("org/llm")
    (hub_root / "org/whisper/main/config.json").write_bytes(b'{"a": 2}')  # a new commit on main
    (hub_root / "org/llm/main/tokenizer.json").write_bytes(b'{"tok": false}')
    new = local_hub.commit_of("org/whisper")
    assert new != old

    # An unrelated manifest edit: re-lock keeps the pinned commits (metadata read at the commit).
    project.write_text(MANIFEST.replace("voices: [af_heart, af_bella]", "voices: [af_heart]"))
    assert run(capsys, "lock", "-m", str(project))[0] == 0
    lock = lockfile.load(lock_path)
    assert {r.commit for r in lock.files() if r.repo_id == "org/whisper"} == {old}

    assert run(capsys, "lock", "-m", str(project), "--upgrade-asset", "stt")[0] == 0
    lock = lockfile.load(lock_path)
    assert {r.commit for r in lock.files() if r.repo_id == "org/whisper"} == {new}
    assert {r.commit for r in lock.files() if r.repo_id == "org/llm"} == {old_llm}
    config = next(r for r in lock.files() if r.path == "config.json")
    assert str(config.digest) == gitsha1(b'{"a": 2}')

    assert run(capsys, "lock", "-m", str(project), "--upgrade")[0] == 0
    lock = lockfile.load(lock_path)
    assert {r.commit for r in lock.files() if r.repo_id == "org/llm"} == {
        local_hub.commit_of("org/llm")
    }


def test_lock_check_detects_a_stale_lock_without_network(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, "lock", "--check", "-m", str(project))
    assert code == 1 and "no lockfile" in err
    assert run(capsys, "lock", "-m", str(project))[0] == 0
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # prove: no network needed
    code, out, _ = run(capsys, "lock", "--check", "-m", str(project))
    assert code == 0 and "up to date" in out
    project.write_text(MANIFEST.replace("file: llm-q4.gguf", "file: llm-q8.gguf"))
    code, _, err = run(capsys, "lock", "--check", "-m", str(project))
    assert code == 1
    assert "stale lock" in err and "asset 'llm' changed" in err and "modelctl lock" in err


def test_plan_json_reports_sizes_and_cache_state(
    project: Path,
    repos: dict[str, dict[str, bytes]],
    local_hub: LocalHub,
    hf_env: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(capsys, "lock", "-m", str(project))[0] == 0
    code, out, _ = run(capsys, "plan", "--json", "-m", str(project))
    assert code == 0
    plan = json.loads(out)
    assert set(plan) == {"files", "total_bytes", "cached_bytes", "download_bytes"}
    total = sum(len(repos[repo][path]) for _, repo, path in EXPECTED_FILES)
    assert plan["total_bytes"] == total and plan["cached_bytes"] == 0
    assert plan["download_bytes"] == total
    assert {(f["asset"], f["repo_id"], f["filename"]) for f in plan["files"]} == EXPECTED_FILES
    assert all(f["revision"] == local_hub.commit_of(f["repo_id"]) for f in plan["files"])

    # Put one file into the HF cache with huggingface_hub itself: plan sees it as cached.
    commit = local_hub.commit_of("org/llm-GGUF")
    hf.hf_hub_download(
        "org/llm-GGUF", "llm-q4.gguf", revision=commit, endpoint=local_hub.url, cache_dir=hf_env
    )
    plan = json.loads(run(capsys, "plan", "--json", "-m", str(project))[1])
    cached = [f for f in plan["files"] if f["cached"]]
    assert [(f["asset"], f["filename"]) for f in cached] == [("llm", "llm-q4.gguf")]
    assert plan["cached_bytes"] == 5000 and plan["download_bytes"] == total - 5000

    code, out, _ = run(capsys, "plan", "-m", str(project))
    assert code == 0 and "llm-q4.gguf" in out and "to download" in out


def test_plan_without_lock_resolves_in_memory(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "plan", "--json", "-m", str(project))
    assert code == 0 and "no lockfile" in err
    assert len(json.loads(out)["files"]) == len(EXPECTED_FILES)
    assert not project.with_suffix(".lock").exists()


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (("repo: org/whisper", "repo: org/nope"), ["repository not found", "org/nope@main"]),
        (
            ("file: llm-q4.gguf", "file: llm-q2.gguf"),
            ["'llm-q2.gguf'", "not in the repo", "modelctl.yaml:7:"],
        ),
        (
            ('files: [model.bin, "*.json"]', 'files: [model.bin, "*.yaml"]'),
            ["glob '*.yaml'", "matches no file"],
        ),
        (("kind: kokoro", "kind: kokoro\n    revision: v9"), ["revision not found", "@v9"]),
        (
            ("voices: [af_heart, af_bella]", "voices: [zz_none]"),
            ["voices/zz_none.bin", "not in the repo"],
        ),
    ],
)
def test_unknown_repo_revision_file_or_glob_exit_2(
    project: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], fragments: list[str]
) -> None:
    project.write_text(MANIFEST.replace(*edit))
    code, _, err = run(capsys, "lock", "-m", str(project))
    assert code == 2, err
    for fragment in fragments:
        assert fragment in err
    assert "Traceback" not in err
    assert not project.with_suffix(".lock").exists()


def test_unreachable_hub_exits_3(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    code, _, err = run(capsys, "lock", "-m", str(project))
    assert code == 3 and "network error" in err and "127.0.0.1:9" in err


def test_bad_manifest_exits_2_with_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = tmp_path / "modelctl.yaml"
    m.write_text("assets:\n  a:\n    repo: o/a\n    files: [x]\n    revison: v1\n")
    code, _, err = run(capsys, "lock", "-m", str(m))
    assert code == 2
    assert f"{m}:5:5" in err and "revison" in err
    m.write_text("assets:\n  a: {repo: o/a, files: [x]\n")
    code, _, err = run(capsys, "plan", "-m", str(m))
    assert code == 2 and "YAML syntax error" in err and f"{m}:" in err


def test_mirror_without_metadata_falls_back_to_one_head_per_file(
    project: Path,
    repos: dict[str, dict[str, bytes]],
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:
    local_hub.faults.set(omit_metadata=True)
    assert run(capsys, "lock", "-m", str(project))[0] == 0
    lock = lockfile.load(project.with_suffix(".lock"))
    for r in lock.files():
        data = repos[r.repo_id][r.path]
        assert r.size == len(data)
        assert str(r.digest) == (sha256(data) if r.path in LFS_NAMES else gitsha1(data))
    assert local_hub.count(method="HEAD") == len(EXPECTED_FILES)
