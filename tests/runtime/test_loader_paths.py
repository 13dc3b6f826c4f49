"""modelctl.runtime: locked, verified paths only, and no network."""

from __future__ import annotations

import hashlib
from pathlib import Path

import huggingface_hub as hf
import pytest

from modelctl.cli import main
from modelctl.runtime import NotSyncedError, UnknownAssetError, open_lock
from modelctl.testing.hub import LocalHub
from tests.support.helpers import write_repo

MANIFEST = """\
assets:
  llm:
    kind: gguf
    repo: org/tiny-GGUF
    file: tiny.gguf
    tokenizer: {repo: org/tiny}
  tts:
    kind: kokoro
    repo: org/kokoro
    voices: [v1, v2]
  vad:
    repo: org/vad
    files: ["*.onnx"]
  old:
    repo: org/vad
    files: [x.onnx]
    enabled: false
  cloud:
    kind: api
"""


def data(seed: int, n: int) -> bytes:
    return hashlib.shake_256(bytes([seed])).digest(n)


@pytest.fixture
def synced(
    tmp_path: Path,
    hf_env: Path,
    hub_root: Path,
    local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> Path:
    """A lock, and every locked file put into the HF cache by huggingface_hub itself."""
    write_repo(hub_root, "org/tiny-GGUF", {"tiny.gguf": data(1, 2000)}, lfs_patterns=("*.gguf",))
    write_repo(hub_root, "org/tiny", {"tokenizer.json": b"{}", "tokenizer_config.json": b"{}"})
    write_repo(
        hub_root,
        "org/kokoro",
        {
            "onnx/model_quantized.onnx": data(2, 3000),
            "tokenizer.json": b"{}",
            "voices/v1.bin": data(3, 1024),
            "voices/v2.bin": data(4, 1024),
        },
        lfs_patterns=("*.onnx", "*.bin"),
    )
    write_repo(hub_root, "org/vad", {"x.onnx": data(5, 500)}, lfs_patterns=("*.onnx",))
    manifest = tmp_path / "modelctl.yaml"
    manifest.write_text(MANIFEST)
    assert main(["lock", "-m", str(manifest)]) == 0
    capsys.readouterr()
    lock = open_lock(tmp_path / "modelctl.lock", verify="none").lock
    for ref in lock.files():
        hf.hf_hub_download(
            ref.repo_id, ref.path, revision=ref.commit, endpoint=local_hub.url, cache_dir=hf_env
        )
    return tmp_path / "modelctl.lock"


def test_typed_accessors_give_the_locked_cached_files(
    synced: Path, hf_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # any network use would fail
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models = open_lock(synced, verify="full")
    g = models.gguf("llm")
    assert g.model.read_bytes() == data(1, 2000)
    assert g.model.is_relative_to(hf_env)
    assert sorted(g.tokenizer) == ["tokenizer.json", "tokenizer_config.json"]
    k = models.kokoro("tts")
    assert k.model.name == "model_quantized.onnx" and k.tokenizer.name == "tokenizer.json"
    assert sorted(k.voices) == ["v1", "v2"] and k.voices["v2"].read_bytes() == data(4, 1024)
    assert list(models.files("vad")) == ["x.onnx"]
    assert models.path("vad", "x.onnx").read_bytes() == data(5, 500)
    assert models.assets() == ["llm", "tts", "vad"]


def test_lock_found_through_env_and_upwards(synced: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELCTL_LOCK", str(synced))
    assert open_lock().lock_path == synced
    monkeypatch.delenv("MODELCTL_LOCK")
    sub = synced.parent / "deep" / "er"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert open_lock().lock_path == synced


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda m: m.path("nope", "x"), "asset 'nope' is not in the lock"),
        (lambda m: m.path("vad", "y.onnx"), "file 'y.onnx' is not locked"),
        (lambda m: m.files("old"), "disabled"),
        (lambda m: m.files("cloud"), "declares no files"),
        (lambda m: m.gguf("vad"), "not a gguf asset"),
        (lambda m: m.kokoro("llm"), "not a kokoro asset"),
    ],
)
def test_only_locked_paths(synced: Path, call: object, fragment: str) -> None:
    models = open_lock(synced)
    with pytest.raises(UnknownAssetError) as info:
        call(models)  # type: ignore[operator]
    assert fragment in info.value.render()


def _blob_of(models_path: Path) -> Path:
    return models_path.resolve()


def test_missing_wrong_size_and_flipped_byte(synced: Path) -> None:
    models = open_lock(synced)
    path = models.path("vad", "x.onnx")
    blob = _blob_of(path)
    # flipped byte: fast passes (size), full refuses
    raw = bytearray(blob.read_bytes())
    raw[100] ^= 0xFF
    blob.write_bytes(bytes(raw))
    assert open_lock(synced, verify="fast").path("vad", "x.onnx") == path
    with pytest.raises(NotSyncedError) as info:
        open_lock(synced, verify="full").path("vad", "x.onnx")
    assert "content differs" in info.value.message and "modelctl sync" in info.value.render()
    blob.write_bytes(b"short")
    with pytest.raises(NotSyncedError, match="wrong size"):
        open_lock(synced).path("vad", "x.onnx")
    blob.unlink()
    with pytest.raises(NotSyncedError) as info:
        open_lock(synced).files("vad")
    assert "not on disk" in info.value.message and info.value.exit_code == 1


def test_bad_verify_mode(synced: Path) -> None:
    with pytest.raises(ValueError):
        open_lock(synced, verify="sometimes")  # type: ignore[arg-type]
