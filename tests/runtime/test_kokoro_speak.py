"""Kokoro.speak(text): espeak-ng phonemes in Kokoro's alphabet, long text in pieces."""

from __future__ import annotations

import pytest

from modelctl.runtime.kokoro import MAX_IDS, EspeakG2P, Kokoro, KokoroPaths
from scripts.assets import AssetDownloadError, fetch_kokoro

np = pytest.importorskip("numpy", reason="numpy carries the audio")
pytest.importorskip("onnxruntime", reason="onnxruntime runs Kokoro")
pytest.importorskip("phonemizer", reason="phonemizer turns text into phonemes (extra g2p)")

pytestmark = pytest.mark.runtime


@pytest.fixture(scope="module")
def kokoro() -> Kokoro:
    try:
        files = fetch_kokoro()
    except AssetDownloadError as exc:
        pytest.skip(f"real assets unavailable: {exc}")
    voices = {v: files.voices[v] for v in ("jf_alpha", "jf_gongitsune")}
    return Kokoro.from_paths(KokoroPaths(files.model, files.tokenizer, voices))


def test_espeak_phonemes_use_only_kokoros_symbols(kokoro: Kokoro) -> None:
    said = EspeakG2P()("Hello, how are you? The judge chose the orange chair.")
    assert said.startswith("həlˈO, hˈW ɑɹ ju?")
    assert "ʤ" in said and "ʧ" in said and "ː" not in said
    assert set(said) <= set(kokoro.vocab), set(said) - set(kokoro.vocab)
    raw = EspeakG2P(map_to_kokoro=False)("Hello")
    assert raw == "həlˈoʊ"


def test_long_text_is_said_in_pieces_that_fit(kokoro: Kokoro) -> None:
    sentence = " ".join(["the quick brown fox jumps over the lazy dog"] * 16)  # no full stop
    ids = kokoro.encode(kokoro.phonemes(sentence))
    assert len(ids) > MAX_IDS  # one Kokoro pass could not say it
    pieces = kokoro._chunks(sentence)
    assert len(pieces) == 2 and all(0 < len(p) <= MAX_IDS for p in pieces)
    assert sum(len(p) for p in pieces) == len(ids)
    audio = kokoro.speak(sentence + ". Done.", "jf_gongitsune")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) / kokoro.sample_rate > 12.0


def test_speak_names_what_is_missing(kokoro: Kokoro) -> None:
    with pytest.raises(KeyError, match="name a voice"):
        kokoro.speak("hello")
    with pytest.raises(KeyError, match="not locked"):
        kokoro.speak("hello", "af_heart")
    with pytest.raises(ValueError, match="nothing to say"):
        kokoro.speak("   ", "jf_alpha")
