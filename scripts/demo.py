"""``just demo``: the speech assistant's start-up and one turn of its loop, offline, on real models.

1. builds a local Hub tree of REAL assets (tiny llama GGUF + tokenizer, Kokoro-82M int8
   ONNX with two voices, silero VAD, Whisper tiny.en in CTranslate2 format) and serves
   it on 127.0.0.1;
2. runs ``modelctl lock``, ``modelctl plan`` and ``modelctl sync`` on
   ``manifests/demo.yaml`` as a user would (subprocesses, progress visible);
3. with the server stopped, opens the lock with ``modelctl.provision(offline=True)``
   (every file verified, nothing to download) and runs the assistant's loop: Kokoro
   speaks a question -> silero VAD finds the speech -> Whisper transcribes it -> the
   transcript is llama.cpp's prompt -> Kokoro speaks the first words of the answer.
   Each stage is printed with its time; the WAVs go to ``demo-out/``.

The tiny GGUF has random weights: its answer is noise, spoken as it comes (its letters
read as phonemes: no grapheme-to-phoneme converter is installed here), or a fixed
sentence when it has too few letters; the demo says which.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelctl.testing.hub import LocalHub
from scripts.assets import build_hub_tree

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_MANIFEST = REPO_ROOT / "manifests" / "demo.yaml"
VAD_RATE = 16_000


def speech_probabilities(session: Any, audio16k: Any) -> list[float]:
    """Silero VAD (16 kHz, 512-sample frames with 64 samples of context) over ``audio16k``."""
    import numpy as np

    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros((1, 64), np.float32)
    audio = np.pad(np.asarray(audio16k, np.float32), (0, (-len(audio16k)) % 512))
    sr = np.array(VAD_RATE, np.int64)
    probs: list[float] = []
    for i in range(0, len(audio), 512):
        x = np.concatenate([context, audio[None, i : i + 512]], axis=1)
        p, state = session.run(None, {"input": x, "state": state, "sr": sr})
        context = x[:, -64:]
        probs.append(float(p[0, 0]))
    return probs


def resample(audio: Any, src_rate: int, dst_rate: int) -> Any:
    import numpy as np

    n = int(len(audio) * dst_rate / src_rate)
    return np.interp(np.linspace(0, len(audio) - 1, n), np.arange(len(audio)), audio).astype(
        np.float32
    )


def write_wav(path: Path, audio: Any, rate: int) -> None:
    import numpy as np

    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def modelctl(args: Sequence[str], env: Mapping[str, str]) -> None:
    print(f"\n$ modelctl {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "modelctl", *args], env=dict(env), check=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "demo-out")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    lock = out / "demo.lock"
    hf_home = out / "hf-home"

    print(
        "== preparing real model files (tiny GGUF, Kokoro-82M int8, silero VAD, "
        "Whisper tiny.en) ...",
        flush=True,
    )
    build_hub_tree(out / "hub", with_whisper=True)
    base_env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_TELEMETRY": "1"}
    base_env.pop("HF_TOKEN", None)
    with LocalHub(out / "hub") as hub:
        print(f"== local Hub server on {hub.url} (no internet needed)", flush=True)
        env = {**base_env, "HF_ENDPOINT": hub.url}
        common = ["-m", str(DEMO_MANIFEST), "--lockfile", str(lock)]
        modelctl(["lock", *common], env)
        modelctl(["plan", *common], env)
        modelctl(["sync", *common], env)
        requests = len(hub.requests)
    print(f"\n== server stopped after {requests} requests; from here on offline (HF_HUB_OFFLINE=1)")
    os.environ["HF_HUB_OFFLINE"] = "1"
    models = start_up(lock, hf_home / "hub")
    print("\n== one turn of the assistant's loop")
    try:
        report = assistant_loop(models, out)
    except LoopError as exc:
        print(f"\nloop failed: {exc}", file=sys.stderr)
        return 1
    print(f"\ntranscript: {report.transcript!r}")
    print(
        f"answer:     {report.answer!r} ({report.tokens} tokens; the tiny GGUF has random "
        "weights, so this is noise by design)"
    )
    said = "fallback sentence" if report.fell_back else "the answer's first words"
    print(f"spoken:     {report.spoken!r} ({said})")
    print("wavs:       " + ", ".join(str(w) for w in report.wavs))
    list_files(models)
    return 0


def start_up(lock: Path, cache: Path) -> Any:
    """An application's start-up: plan, sync what is missing (nothing: offline), open."""
    import modelctl
    from modelctl.progress import DownloadPlanReady, Event, SyncFinished

    def on_event(event: Event) -> None:
        if isinstance(event, DownloadPlanReady):
            plan = event.plan
            print(
                f"plan:       {len(plan.files)} files, {plan.total_bytes / 2**20:.1f} MiB, "
                f"{len(plan.to_download())} to download"
            )
        elif isinstance(event, SyncFinished):
            print(f"sync:       {event.files_present} present, {event.files_downloaded} downloaded")

    t0 = time.perf_counter()
    models = modelctl.provision(
        lock, cache_dir=cache, offline=True, listener=on_event, verify="full"
    )
    for asset in models.assets():
        models.files(asset)
    print(
        f"provision:  {(time.perf_counter() - t0) * 1000:.0f} ms "
        "(every locked file hashed against the lock)"
    )
    return models


# The question Kokoro asks: text, and the same in Kokoro's phoneme alphabet (there is no
# grapheme-to-phoneme converter on these machines). Whisper tiny.en hears it right in
# Kokoro's jf_alpha voice.
QUESTION = "Hello, how are you?"
QUESTION_PHONEMES = "həlˈoʊ, hˌaʊ ɑːɹ jˈuː?"
VOICE = "jf_alpha"
# Said instead when the LLM's answer has too little to speak.
FALLBACK_ANSWER = "I heard you."
FALLBACK_PHONEMES = "aɪ hˈɜːd juː."
ANSWER_WORDS = 8
MIN_SPOKEN_LETTERS = 4
STT_RATE = 16_000
VAD_FRAME = 512  # samples at 16 kHz: 32 ms
VAD_PAD_FRAMES = 3  # speech region padding on either side


def words(text: str) -> list[str]:
    """Lower-case words, punctuation dropped: how transcripts are compared."""
    return re.findall(r"[a-z0-9']+", text.lower())


def contains_words(transcript: str, phrase: str) -> bool:
    """Every word of ``phrase`` is in ``transcript``, in order (case and punctuation aside)."""
    heard = iter(words(transcript))
    return all(w in heard for w in words(phrase))


def letters_as_phonemes(text: str, vocab: dict[str, int]) -> str:
    """A crude reading of English text in Kokoro's alphabet: letters stand for the IPA
    symbols they look like (there is no G2P here), g is IPA ɡ; the rest is dropped."""
    lowered = text.lower().replace("g", "ɡ")
    return "".join(c for c in lowered if c in vocab or c == " ").strip()


def speech_region(probs: list[float], threshold: float = 0.5) -> tuple[int, int] | None:
    """Sample range [start, end) of the frames from the first to the last speech frame."""
    hits = [i for i, p in enumerate(probs) if p > threshold]
    if not hits:
        return None
    first = max(0, hits[0] - VAD_PAD_FRAMES)
    last = min(len(probs), hits[-1] + 1 + VAD_PAD_FRAMES)
    return first * VAD_FRAME, last * VAD_FRAME


@dataclass
class LoopReport:
    transcript: str = ""
    answer: str = ""
    spoken: str = ""
    fell_back: bool = False
    speech_s: float = 0.0
    tokens: int = 0
    stages: list[tuple[str, float, str]] = field(default_factory=list)
    wavs: list[Path] = field(default_factory=list)


class LoopError(RuntimeError):
    """A stage of the loop did not do its job (no speech found, a wrong transcript)."""


@contextmanager
def _stage(report: LoopReport, name: str, say: Callable[[str], None]) -> Iterator[list[str]]:
    detail: list[str] = []
    t0 = time.perf_counter()
    yield detail
    seconds = time.perf_counter() - t0
    report.stages.append((name, seconds, " ".join(detail)))
    say(f"{name:<10} {seconds * 1000:6.0f} ms  {' '.join(detail)}")


def assistant_loop(models: Any, out: Path, say: Callable[[str], None] = print) -> LoopReport:
    """Kokoro asks -> silero VAD finds the speech -> Whisper transcribes -> llama.cpp
    answers -> Kokoro speaks the answer's first words. Every stage timed; WAVs in ``out``."""
    report = LoopReport()
    with _stage(report, "load", say) as d:
        tts = models.load_kokoro("tts")
        vad = models.load_onnx("vad")
        stt = models.load_whisper("stt", device="cpu", compute_type="int8", cpu_threads=2)
        llm = models.load_llama("llm", n_ctx=256, n_threads=2, seed=0)
        d.append("Kokoro, silero VAD, Whisper tiny.en, llama.cpp from verified locked paths")
    with _stage(report, "tts-ask", say) as d:
        audio = tts.synthesize(tts.encode(QUESTION_PHONEMES), VOICE)
        wav = out / "question.wav"
        write_wav(wav, audio, tts.sample_rate)
        report.wavs.append(wav)
        d.append(f"{QUESTION!r} -> {len(audio) / tts.sample_rate:.2f} s of audio -> {wav.name}")
    with _stage(report, "vad", say) as d:
        audio16 = resample(audio, tts.sample_rate, STT_RATE)
        probs = speech_probabilities(vad, audio16)
        region = speech_region(probs)
        if region is None:
            raise LoopError(f"silero VAD found no speech in {wav} (max p {max(probs):.2f})")
        speech = audio16[region[0] : region[1]]
        report.speech_s = len(speech) / STT_RATE
        d.append(
            f"speech in {sum(p > 0.5 for p in probs)}/{len(probs)} frames; "
            f"{region[0] / STT_RATE:.2f}-{region[1] / STT_RATE:.2f} s kept"
        )
    with _stage(report, "stt", say) as d:
        segments, _ = stt.transcribe(speech, language="en", beam_size=1)
        report.transcript = "".join(s.text for s in segments).strip()
        d.append(f"heard {report.transcript!r}")
    if not contains_words(report.transcript, QUESTION):
        raise LoopError(f"Whisper heard {report.transcript!r}, not the words of {QUESTION!r}")
    with _stage(report, "llm", say) as d:
        result = llm(f"Q: {report.transcript}\nA:", max_tokens=24, temperature=0.0)
        report.answer = result["choices"][0]["text"].strip()
        report.tokens = int(result["usage"]["completion_tokens"])
        d.append(f"{report.tokens} tokens: {report.answer!r}")
    with _stage(report, "tts-answer", say) as d:
        first = " ".join(re.findall(r"[A-Za-z']+", report.answer)[:ANSWER_WORDS])
        phonemes = letters_as_phonemes(first, tts.vocab)
        if sum(c.isalpha() for c in phonemes) < MIN_SPOKEN_LETTERS:
            report.fell_back = True
            report.spoken, phonemes = FALLBACK_ANSWER, FALLBACK_PHONEMES
            d.append(f"the answer has too little to speak; saying {FALLBACK_ANSWER!r} instead")
        else:
            report.spoken = first
            d.append(f"speaking the answer's first words {first!r}, letters read as phonemes")
        answer_audio = tts.synthesize(tts.encode(phonemes), VOICE)
        wav = out / "answer.wav"
        write_wav(wav, answer_audio, tts.sample_rate)
        report.wavs.append(wav)
        d.append(f"-> {len(answer_audio) / tts.sample_rate:.2f} s -> {wav.name}")
    return report


def list_files(models: Any) -> None:
    print("\nThe files are in the Hugging Face cache (shared with transformers, llama.cpp):")
    for asset in models.assets():
        for name, path in models.files(asset).items():
            print(f"  {asset:4} {name:32} {path}")


if __name__ == "__main__":
    raise SystemExit(main())
