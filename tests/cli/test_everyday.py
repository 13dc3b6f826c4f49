"""The everyday commands against the real local Hub: add, remove, outdated, --asset,
--json on every reporting command, -q/-v, export (CycloneDX), completion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from modelctl.cli import main
from modelctl.lock import lockfile
from modelctl.testing.hub import LocalHub
from tests.support.helpers import seeded_bytes, write_repo

LFS = ("*.bin", "*.gguf", "*.onnx")

# A manifest as a person writes it: comments, blank lines, flow lists, quoted globs.
MANIFEST = """\
# Models for the voice service.
version: 1
assets:
  # speech to text
  stt:
    kind: stt
    repo: org/whisper   # tiny.en
    files: [model.bin, "*.json"]

  vad:
    repo: org/vad
    files:
      - vad.onnx
    # keep this one small

# the API fallback needs nothing
"""


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def repos(hub_root: Path) -> None:
    write_repo(
        hub_root,
        "org/whisper",
        {"model.bin": seeded_bytes(1, 3000), "config.json": b'{"a": 1}', "vocabulary.txt": b"a b"},
        lfs_patterns=LFS,
    )
    stt_layout = {n: b"{}" for n in ("config.json", "tokenizer.json", "vocabulary.txt")}
    write_repo(
        hub_root, "org/whisper", {"model.bin": seeded_bytes(1, 3000), **stt_layout}, "v1", LFS
    )
    write_repo(hub_root, "org/vad", {"vad.onnx": seeded_bytes(2, 2000)}, lfs_patterns=LFS)
    write_repo(hub_root, "org/llm-GGUF", {"q4.gguf": seeded_bytes(3, 4000)}, lfs_patterns=LFS)
    write_repo(hub_root, "org/llm", {"tokenizer.json": b"{}", "tokenizer_config.json": b"{}"})
    write_repo(
        hub_root,
        "onnx-community/Kokoro-82M-v1.0-ONNX",
        {
            "onnx/model_quantized.onnx": seeded_bytes(4, 3000),
            "tokenizer.json": b'{"k": 1}',
            "voices/af_heart.bin": seeded_bytes(5, 512),
        },
        lfs_patterns=LFS,
    )


@pytest.fixture
def project(
    tmp_path: Path,
    hf_env: Path,
    repos: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Path:
    """A locked project in the current folder; returns the manifest path."""
    folder = tmp_path / "proj"
    folder.mkdir()
    manifest = folder / "modelctl.yaml"
    manifest.write_text(MANIFEST)
    monkeypatch.chdir(folder)
    assert main(["lock"]) == 0
    capsys.readouterr()
    return manifest


# ------------------------------------------------------------------ add / remove


def test_add_then_remove_leaves_manifest_and_lock_byte_identical(
    project: Path, local_hub: LocalHub, capsys: pytest.CaptureFixture[str]
) -> None:
    lock_path = project.with_suffix(".lock")
    manifest0, lock0 = project.read_bytes(), lock_path.read_bytes()
    local_hub.clear_requests()
    code, _, err = run(
        capsys,
        "add", "llm", "org/llm-GGUF", "--kind", "gguf", "--file", "q4.gguf",
        "--tokenizer", "org/llm",
    )  # fmt: skip
    assert code == 0, err
    assert "added 'llm'" in err and "3 file(s) locked" in err
    # Only the new asset was resolved: its two repos, nothing of stt/vad.
    asked = {r.path.split("/")[4] for r in local_hub.requests if r.path.startswith("/api/")}
    assert asked == {"llm-GGUF", "llm"}
    block = (
        "\n  llm:\n    kind: gguf\n    repo: org/llm-GGUF\n    file: q4.gguf\n"
        "    tokenizer:\n      repo: org/llm\n"
    )
    small = "    # keep this one small\n"
    assert project.read_text() == MANIFEST.replace(small, small + block)  # nothing else moved
    assert run(capsys, "lock", "--check")[0] == 0
    lock = lockfile.load(lock_path)
    assert {r.path for r in lock.files() if r.asset == "llm"} == {
        "q4.gguf",
        "tokenizer.json",
        "tokenizer_config.json",
    }

    local_hub.clear_requests()
    code, _, err = run(capsys, "remove", "llm")
    assert code == 0, err
    assert local_hub.requests == []  # the lock was fresh: nothing to ask
    assert project.read_bytes() == manifest0
    assert lock_path.read_bytes() == lock0


def test_add_each_preset(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project.chmod(0o640)  # the manifest keeps its mode through the atomic rewrite
    assert run(capsys, "add", "stt2", "org/whisper", "--kind", "stt", "-r", "v1")[0] == 0
    assert run(capsys, "add", "tts", "--kind", "kokoro", "--voice", "af_heart")[0] == 0
    assert run(capsys, "add", "cloud", "--kind", "api", "-d", "hosted")[0] == 0
    code, out, err = run(capsys, "add", "all", "org/whisper", "-f", "*.json", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["action"] == "added" and data["relocked"] == "asset" and not data["dry_run"]
    assert [f["filename"] for f in data["files"]] == ["config.json"]
    lock = lockfile.load(project.with_suffix(".lock"))
    files = {(r.asset, r.path) for r in lock.files()}
    stt2 = {p for a, p in files if a == "stt2"}
    assert stt2 == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    assert ("tts", "voices/af_heart.bin") in files
    assert lock.asset("cloud") is not None
    assert run(capsys, "lock", "--check")[0] == 0
    text = project.read_text()
    assert "  tts:\n    kind: kokoro\n    voices: [af_heart]\n" in text
    # kind stt without --file: the preset's default layout, so no `files:` is written.
    assert "  stt2:\n    kind: stt\n    repo: org/whisper\n    revision: v1\n\n" in text
    assert project.stat().st_mode & 0o777 == 0o640


def test_add_dry_run_prints_the_diff_and_writes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = project.read_bytes(), project.with_suffix(".lock").read_bytes()
    code, out, err = run(capsys, "add", "x", "org/llm", "-f", "tokenizer.json", "--dry-run")
    assert code == 0, err
    assert "+  x:\n+    repo: org/llm\n+    files: [tokenizer.json]\n" in out
    assert out.startswith("--- ")
    assert (project.read_bytes(), project.with_suffix(".lock").read_bytes()) == before
    code, out, _ = run(capsys, "remove", "vad", "--dry-run")
    assert code == 0 and "-  vad:" in out
    assert (project.read_bytes(), project.with_suffix(".lock").read_bytes()) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x", "org/nope", "-f", "a.bin"], "repository not found"),
        (["x", "org/llm", "-f", "tokenizer.json", "-r", "v9"], "revision not found"),
        (["x", "org/llm", "-f", "nope.json"], "is not in the repo"),
        (["x", "org/llm", "-f", "*.gguf"], "matches no file"),
        (["stt", "org/llm", "-f", "tokenizer.json"], "already exists"),
        (["bad name!", "org/llm", "-f", "tokenizer.json"], "invalid"),
        (["x", "org/llm-GGUF", "--kind", "gguf"], "exactly one --file"),
        (["x", "org/llm", "--voice", "af"], "--voice does not apply"),
    ],
)
def test_add_bad_input_exits_2_and_writes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    before = project.read_bytes(), project.with_suffix(".lock").read_bytes()
    code, _, err = run(capsys, "add", *args)
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert (project.read_bytes(), project.with_suffix(".lock").read_bytes()) == before
    assert sorted(p.name for p in project.parent.iterdir()) == ["modelctl.lock", "modelctl.yaml"]


def test_add_and_remove_refuse_a_manifest_that_does_not_parse(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write_text(MANIFEST + "  broken: [\n")
    before = project.read_bytes()
    for args in (["add", "x", "org/llm", "-f", "tokenizer.json"], ["remove", "vad"]):
        code, _, err = run(capsys, *args)
        assert code == 2 and "YAML syntax error" in err and str(project) in err
        assert project.read_bytes() == before


def test_remove_unknown_asset_exits_2_listing_them(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "remove", "nope")
    assert code == 2 and "one of: stt, vad" in err


def test_remove_with_a_stale_lock_relocks_everything(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write_text(MANIFEST.replace("vad.onnx", "'*.onnx'"))
    code, _, err = run(capsys, "remove", "stt")
    assert code == 0, err
    assert "every asset was re-resolved" in err
    assert run(capsys, "lock", "--check")[0] == 0
    assert {a.name for a in lockfile.load(project.with_suffix(".lock")).assets} == {"vad"}


# ------------------------------------------------------------------ outdated


def test_outdated_names_new_commits_and_changed_files(
    project: Path, hub_root: Path, local_hub: LocalHub, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "outdated", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["outdated"] == 0 and {s["asset"] for s in data["sources"]} == {"stt", "vad"}

    # Upstream moves on: a file changes, a new file matches the glob.
    write_repo(hub_root, "org/whisper", {"config.json": b'{"a": 2}', "extra.json": b"{}"})
    code, out, _ = run(capsys, "outdated", "--json")
    data = json.loads(out)
    assert data["outdated"] == 1
    stt = next(s for s in data["sources"] if s["asset"] == "stt")
    assert stt["outdated"] and stt["latest_commit"] == local_hub.commit_of("org/whisper")
    assert stt["locked_commit"] != stt["latest_commit"]
    changes = {f["path"]: f for f in stt["files"]}
    assert changes["config.json"]["change"] == "changed"
    assert changes["config.json"]["old_size"] == 8 and changes["config.json"]["new_size"] == 8
    assert changes["config.json"]["old_digest"] != changes["config.json"]["new_digest"]
    assert changes["extra.json"]["change"] == "added"
    assert set(changes) == {"config.json", "extra.json"}

    code, out, _ = run(capsys, "outdated")
    assert code == 0
    assert "1 changed, 1 added" in out and "1 of 2 source(s) outdated" in out

    assert run(capsys, "lock", "-P", "stt")[0] == 0
    assert json.loads(run(capsys, "outdated", "--json")[1])["outdated"] == 0


def test_outdated_reports_pinned_commits_without_asking(
    project: Path, local_hub: LocalHub, capsys: pytest.CaptureFixture[str]
) -> None:
    commit = local_hub.commit_of("org/vad")
    project.write_text(
        MANIFEST.replace("    repo: org/vad\n", f"    repo: org/vad\n    revision: {commit}\n")
    )
    assert run(capsys, "lock")[0] == 0
    local_hub.clear_requests()
    code, out, _ = run(capsys, "outdated", "--asset", "vad")
    assert code == 0 and "(pinned)" in out
    assert local_hub.requests == []


def test_outdated_with_a_stale_lock_exits_1(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write_text(MANIFEST.replace("vad.onnx", "'*.onnx'"))
    code, _, err = run(capsys, "outdated")
    assert code == 1 and "modelctl lock" in err


# ------------------------------------------------------------------ --asset subsets


def test_sync_asset_plans_and_counts_only_the_subset(
    project: Path, hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "plan", "--asset", "vad", "--json")
    assert code == 0
    assert [f["filename"] for f in json.loads(out)["files"]] == ["vad.onnx"]
    code, out, err = run(capsys, "sync", "--asset", "vad", "--json")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    plan = next(e for e in events if e["event"] == "plan")
    assert [f["filename"] for f in plan["files"]] == ["vad.onnx"]
    assert events[-1]["event"] == "finished"
    assert {e["filename"] for e in events if e["event"] == "file_done"} == {"vad.onnx"}

    code, out, _ = run(capsys, "status", "--json", "--asset", "vad")
    assert code == 0
    assert [f["state"] for f in json.loads(out)["files"]] == ["verified"]
    assert run(capsys, "verify", "--asset", "vad")[0] == 0
    assert run(capsys, "verify")[0] == 1  # stt is not synced


def test_an_unknown_asset_exits_2_listing_the_locked_ones(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for cmd in ("plan", "sync", "verify", "status", "outdated", "export"):
        code, _, err = run(capsys, cmd, "--asset", "vad", "--asset", "nope")
        assert code == 2, cmd
        assert "nope" in err and "one of: stt, vad" in err
    code, _, err = run(capsys, "bundle", "out.tar", "--asset", "nope")
    assert code == 2 and "one of: stt, vad" in err


def test_bundle_asset_round_trips_with_the_same_subset(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "sync", "-q", "--asset", "vad")[0] == 0
    tar = tmp_path / "vad.tar"
    code, out, err = run(capsys, "bundle", str(tar), "--asset", "vad", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["assets"] == ["vad"] and data["files"] == 1 and data["path"] == str(tar)
    target = tmp_path / "image"
    code, _, err = run(
        capsys, "sync", "--frozen", "--from-bundle", str(tar), "--asset", "vad", "--target",
        str(target),
    )  # fmt: skip
    assert code == 0, err
    assert (target / "vad" / "vad.onnx").read_bytes() == seeded_bytes(2, 2000)
    assert not (target / "stt").exists()


# ------------------------------------------------------------------ --json, -q, -v


def test_every_reporting_command_prints_its_documented_json(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def js(*args: str) -> dict[str, object]:
        code, out, err = run(capsys, *args, "--json")
        assert code == 0, (args, err)
        value: dict[str, object] = json.loads(out)
        return value

    assert set(js("lock")) == {"lockfile", "written", "assets", "files", "changes"}
    assert set(js("lock", "--check")) == {"lockfile", "up_to_date", "changes"}
    assert set(js("plan")) == {"files", "total_bytes", "cached_bytes", "download_bytes"}
    code, out, _ = run(capsys, "sync", "--json")
    assert code == 0 and all("event" in json.loads(line) for line in out.splitlines())
    verify = js("verify")
    assert set(verify) == {"location", "ok", "hashed", "files"} and verify["ok"] is True
    assert set(js("status")) == {"location", "files", "totals"}
    assert {"location", "items", "total_bytes", "dry_run"} <= set(js("gc"))
    bundle = js("bundle", str(tmp_path / "b.tar"))
    assert {"path", "files", "blobs", "bundle_bytes", "lock_sha256"} <= set(bundle)
    assert set(js("outdated")) == {"sources", "outdated", "errors"}


def test_verify_json_reports_bad_files_and_exits_1(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "verify", "--json")
    assert code == 1 and "differ from the lock" in err
    data = json.loads(out)
    assert data["ok"] is False and {f["status"] for f in data["files"]} == {"missing"}


def test_lock_check_json_on_a_stale_lock_prints_the_changes_and_exits_1(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write_text(MANIFEST.replace("vad.onnx", "'*.onnx'"))
    code, out, _ = run(capsys, "lock", "--check", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["up_to_date"] is False
    assert data["changes"] == ["asset 'vad' changed in the manifest since it was locked"]


def test_quiet_and_verbose(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-q", "sync")
    assert code == 0 and err == "" and out.strip()
    project.write_text(MANIFEST.replace("vad.onnx", "'*.onnx'"))
    code, _, err = run(capsys, "-v", "lock")
    assert code == 0 and "asset 'vad' changed in the manifest" in err
    code, _, err = run(capsys, "-v", "add", "x", "org/nope", "-f", "a")
    assert code == 2 and "caused by:" in err
    assert run(capsys, "-q", "-v", "plan")[0] == 2


# ------------------------------------------------------------------ export, completion


def test_export_cyclonedx_validates_against_the_schema(
    project: Path, tmp_path: Path, local_hub: LocalHub, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "export", "--format", "cyclonedx")
    assert code == 0
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(out) is None
    doc = json.loads(out)
    commit = local_hub.commit_of("org/whisper")
    purls = {c["purl"] for c in doc["components"]}
    assert f"pkg:huggingface/org/whisper@{commit}#model.bin" in purls
    assert len(doc["components"]) == 3  # model.bin, config.json, vad.onnx
    model = next(c for c in doc["components"] if c["name"] == "model.bin")
    assert model["hashes"][0]["alg"] == "SHA-256"
    assert {"name": "modelctl:size", "value": "3000"} in model["properties"]
    out_file = tmp_path / "sbom.json"
    assert run(capsys, "export", "-o", str(out_file), "--asset", "vad")[0] == 0
    assert len(json.loads(out_file.read_text())["components"]) == 1


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "modelctl", "completion", shell],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "_MODELCTL_COMPLETE" in r.stdout


def test_completion_completes_commands(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "modelctl"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "_MODELCTL_COMPLETE": "bash_complete",
            "COMP_WORDS": "modelctl ou",
            "COMP_CWORD": "1",
        },
    )
    assert "plain,outdated" in r.stdout
