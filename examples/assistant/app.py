"""A speech assistant on locked models: ask it with a WAV file (or text), it answers aloud.

    python app.py question.wav -o answer.wav        # VAD -> Whisper -> Gemma -> Kokoro
    python app.py --text "What do bees make?" -o answer.wav
    python app.py --say "What do bees make?" -o question.wav   # Kokoro only
    python app.py question.wav --hear-back          # also: what Whisper hears in the answer

Start-up calls ``modelctl.provision()`` on ``modelctl.lock`` beside this file: every
locked file that is not yet in the Hugging Face cache is downloaded (a progress bar on
stderr), checked against the lock's size and digest, and only then handed out. After
the first run the app starts offline (``HF_HUB_OFFLINE=1`` works). The models:

- ``vad``: Silero VAD finds where the speech is;
- ``stt``: Whisper tiny.en (faster-whisper) transcribes it;
- ``llm``: Gemma 3 270M (llama.cpp) answers: with the GGUF's chat template when it has
  one, else (this GGUF: the pretrained model, no template) a short question/answer
  prompt that the model continues; greedy decoding, so an answer is reproducible;
- ``tts``: Kokoro-82M says the answer (``load_kokoro(...).speak(text)``: espeak-ng
  text-to-phonemes, needs the ``g2p`` extra).

Needs: ``pip install 'modelctl[llm,onnx,stt,g2p]'``. Gemma is subject to the Gemma
Terms of Use (ai.google.dev/gemma/terms); see README.md here.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import modelctl
from modelctl.errors import ModelctlError
from modelctl.progress import AggregateProgress, DownloadPlanReady, Event, SyncFinished
from modelctl.runtime import LockedModels

HERE = Path(__file__).resolve().parent
STT_RATE = 16_000  # Silero VAD and Whisper take 16 kHz
VAD_FRAME = 512  # samples: 32 ms
VAD_PAD_FRAMES = 3  # frames kept on either side of the speech
VOICE = "jf_gongitsune"
MAX_TOKENS = 32  # a spoken answer is one sentence; 2 shared cores make tokens dear
SEED = 0
# The pretrained model continues a pattern: two worked examples, then the question.
FEW_SHOT = (
    "Question: What is the capital of Italy?\n"
    "Answer: The capital of Italy is Rome.\n\n"
    "Question: How many legs does a spider have?\n"
    "Answer: A spider has eight legs.\n\n"
)


# --------------------------------------------------------------------------- start-up


class ProgressBar:
    """A download bar on stderr, fed by provision()'s events: redrawn in place at most
    10 times a second on a terminal, else (a log) one line every 5 seconds."""

    WIDTH = 30

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tty = sys.stderr.isatty()
        self.every = 0.1 if self.tty else 5.0
        self.last = 0.0

    def __call__(self, event: Event) -> None:
        with self.lock:
            if isinstance(event, DownloadPlanReady):
                todo = event.plan.to_download()
                mib = sum(f.size_bytes or 0 for f in todo) / 2**20
                print(
                    f"models: {len(event.plan.files)} locked files, "
                    f"{len(todo)} to download ({mib:.1f} MiB)",
                    file=sys.stderr,
                )
            elif isinstance(event, AggregateProgress) and event.total_bytes:
                now = time.monotonic()
                last = event.files_complete == event.files_total
                if now - self.last < self.every and not last:
                    return
                self.last = now
                done = event.bytes_downloaded / event.total_bytes
                fill = int(done * self.WIDTH)
                start = "\r" if self.tty else ""
                print(
                    f"{start}[{'#' * fill}{'.' * (self.WIDTH - fill)}] "
                    f"{done:4.0%} {event.bytes_downloaded / 2**20:6.1f}/"
                    f"{event.total_bytes / 2**20:.1f} MiB, "
                    f"files {event.files_complete}/{event.files_total}",
                    end="" if self.tty else "\n",
                    file=sys.stderr,
                    flush=True,
                )
            elif isinstance(event, SyncFinished):
                if event.files_downloaded and self.tty:
                    print(file=sys.stderr)
                print(
                    f"models: {event.files_downloaded} downloaded, {event.files_present} "
                    f"already here, in {event.seconds:.1f} s",
                    file=sys.stderr,
                )


@contextlib.contextmanager
def _no_weight_repacking() -> Iterator[None]:
    """llama.cpp without its extra CPU buffer types (weight repacking, Intel AMX).

    On CPUs that report AMX inside VMs that do not enable it (the 2-core machines this
    was built on), llama.cpp's AMX kernel dies with a general protection fault at its
    first ``ldtilecfg`` on a Q4_K model. llama-cpp-python does not expose the model
    parameter ``use_extra_bufts``, so its default is changed while the model loads.
    The plain CPU kernels are used instead (same results, a little slower).
    """
    import llama_cpp.llama as llama_module

    binding = llama_module.llama_cpp
    original = binding.llama_model_default_params

    def params() -> Any:
        p = original()
        p.use_extra_bufts = False
        return p

    binding.llama_model_default_params = params
    try:
        yield
    finally:
        binding.llama_model_default_params = original


@dataclass
class Assistant:
    models: LockedModels
    vad: Any
    stt: Any
    llm: Any
    tts: Any
    voice: str = VOICE
    load_s: float = 0.0

    @classmethod
    def start(cls, lock: Path = HERE / "modelctl.lock", **provision: Any) -> Assistant:
        """Provision the lock (download what is missing, verified), then load every model."""
        models = modelctl.provision(
            lock, manifest=lock.with_name("modelctl.yaml"), listener=ProgressBar(), **provision
        )
        t0 = time.perf_counter()
        vad = models.load_onnx("vad")
        stt = models.load_whisper("stt", device="cpu", compute_type="int8", cpu_threads=2)
        with _no_weight_repacking():
            llm = models.load_llama("llm", n_ctx=512, n_threads=2, seed=SEED)
        tts = models.load_kokoro("tts")
        return cls(models, vad, stt, llm, tts, load_s=time.perf_counter() - t0)

    # ------------------------------------------------------------------- the loop
    def answer_audio(self, audio: Any, rate: int) -> Turn:
        """VAD -> Whisper -> LLM -> Kokoro on mono float32 ``audio`` at ``rate`` Hz."""
        turn = Turn()
        with turn.stage("vad") as d:
            audio16 = resample(audio, rate, STT_RATE)
            probs = speech_probabilities(self.vad, audio16)
            region = speech_region(probs)
            if region is None:
                raise NoSpeechError(f"no speech found (highest probability {max(probs):.2f})")
            speech = audio16[region[0] : region[1]]
            d.append(
                f"speech in {sum(p > 0.5 for p in probs)}/{len(probs)} frames, "
                f"{region[0] / STT_RATE:.2f}-{region[1] / STT_RATE:.2f} s kept"
            )
        with turn.stage("stt") as d:
            turn.heard = self.transcribe(speech)
            d.append(f"heard {turn.heard!r}")
        self._reply(turn, turn.heard)
        return turn

    def answer_text(self, text: str) -> Turn:
        turn = Turn(heard=text)
        self._reply(turn, text)
        return turn

    def _reply(self, turn: Turn, question: str) -> None:
        with turn.stage("llm") as d:
            turn.answer, tokens = self.ask(question)
            d.append(f"{tokens} tokens: {turn.answer!r}")
        with turn.stage("tts") as d:
            turn.audio = self.tts.speak(turn.answer or "I do not know.", self.voice)
            d.append(f"{len(turn.audio) / self.tts.sample_rate:.2f} s of speech")

    def transcribe(self, audio16k: Any) -> str:
        segments, _ = self.stt.transcribe(audio16k, language="en", beam_size=1)
        return "".join(s.text for s in segments).strip()

    def ask(self, question: str) -> tuple[str, int]:
        """The LLM's one-sentence answer to ``question`` and its token count (greedy)."""
        if self.llm.metadata.get("tokenizer.chat_template"):
            result = self.llm.create_chat_completion(
                messages=[{"role": "user", "content": f"Answer in one sentence: {question}"}],
                max_tokens=MAX_TOKENS,
                temperature=0.0,
                seed=SEED,
            )
            text = result["choices"][0]["message"]["content"] or ""
        else:
            prompt = f"{FEW_SHOT}Question: {question.strip()}\nAnswer:"
            result = self.llm(
                prompt, max_tokens=MAX_TOKENS, temperature=0.0, seed=SEED, stop=["\n"]
            )
            text = result["choices"][0]["text"]
        return text.strip(), int(result["usage"]["completion_tokens"])


class NoSpeechError(RuntimeError):
    """The VAD found no speech in the input."""


@dataclass
class Turn:
    heard: str = ""
    answer: str = ""
    audio: Any = None
    stages: list[tuple[str, float, str]] = field(default_factory=list)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[list[str]]:
        detail: list[str] = []
        t0 = time.perf_counter()
        yield detail
        self.stages.append((name, time.perf_counter() - t0, " ".join(detail)))


# --------------------------------------------------------------------------- audio


def speech_probabilities(session: Any, audio16k: Any) -> list[float]:
    """Silero VAD over 512-sample frames (with 64 samples of context) of 16 kHz audio."""
    import numpy as np

    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros((1, 64), np.float32)
    audio = np.pad(np.asarray(audio16k, np.float32), (0, (-len(audio16k)) % VAD_FRAME))
    sr = np.array(STT_RATE, np.int64)
    probs: list[float] = []
    for i in range(0, len(audio), VAD_FRAME):
        x = np.concatenate([context, audio[None, i : i + VAD_FRAME]], axis=1)
        p, state = session.run(None, {"input": x, "state": state, "sr": sr})
        context = x[:, -64:]
        probs.append(float(p[0, 0]))
    return probs


def speech_region(probs: list[float], threshold: float = 0.5) -> tuple[int, int] | None:
    """Sample range [start, end) from the first to the last speech frame, padded."""
    hits = [i for i, p in enumerate(probs) if p > threshold]
    if not hits:
        return None
    first = max(0, hits[0] - VAD_PAD_FRAMES)
    last = min(len(probs), hits[-1] + 1 + VAD_PAD_FRAMES)
    return first * VAD_FRAME, last * VAD_FRAME


def resample(audio: Any, src_rate: int, dst_rate: int) -> Any:
    import numpy as np

    audio = np.asarray(audio, np.float32)
    if src_rate == dst_rate:
        return audio
    n = int(len(audio) * dst_rate / src_rate)
    return np.interp(np.linspace(0, len(audio) - 1, n), np.arange(len(audio)), audio).astype(
        np.float32
    )


def read_wav(path: Path) -> tuple[Any, int]:
    """Mono float32 samples and the rate of a 16-bit PCM WAV (channels averaged)."""
    import numpy as np

    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * w.getsampwidth()}-bit WAV; 16-bit PCM expected")
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
        channels, rate = w.getnchannels(), w.getframerate()
    return frames.reshape(-1, channels).mean(axis=1), rate


def write_wav(path: Path, audio: Any, rate: int) -> None:
    import numpy as np

    pcm = (np.clip(np.asarray(audio), -1.0, 1.0) * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("wav", nargs="?", type=Path, help="the question, a 16-bit PCM WAV")
    parser.add_argument("--text", help="the question as text (no VAD, no Whisper)")
    parser.add_argument("--say", help="only speak this text into --out (Kokoro)")
    parser.add_argument("-o", "--out", type=Path, default=Path("answer.wav"))
    parser.add_argument("--lock", type=Path, default=HERE / "modelctl.lock")
    parser.add_argument(
        "--hear-back", action="store_true", help="transcribe the answer WAV with Whisper"
    )
    args = parser.parse_args(argv)
    if sum(x is not None for x in (args.wav, args.text, args.say)) != 1:
        parser.error("give one of: a WAV file, --text or --say")

    t0 = time.perf_counter()
    try:
        bot = Assistant.start(args.lock)
    except ModelctlError as exc:  # not locked, stale lock, download failed: one message
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    print(
        f"{'start-up':<10} {time.perf_counter() - t0:7.2f} s  (models loaded in {bot.load_s:.2f} s)"
    )
    if args.say is not None:
        t1 = time.perf_counter()
        audio = bot.tts.speak(args.say, bot.voice)
        write_wav(args.out, audio, bot.tts.sample_rate)
        seconds = time.perf_counter() - t1
        print(f"{'tts':<10} {seconds:7.2f} s  {args.say!r} -> {args.out}")
        return 0
    try:
        if args.text is not None:
            turn = bot.answer_text(args.text)
        else:
            audio, rate = read_wav(args.wav)
            turn = bot.answer_audio(audio, rate)
    except NoSpeechError as exc:
        print(f"{args.wav}: {exc}", file=sys.stderr)
        return 1
    write_wav(args.out, turn.audio, bot.tts.sample_rate)
    for name, seconds, detail in turn.stages:
        print(f"{name:<10} {seconds:7.2f} s  {detail}")
    print(f"question:  {turn.heard}")
    print(f"answer:    {turn.answer}")
    print(f"spoken to: {args.out}")
    if args.hear_back:
        t1 = time.perf_counter()
        back = bot.transcribe(resample(turn.audio, bot.tts.sample_rate, STT_RATE))
        print(f"{'hear-back':<10} {time.perf_counter() - t1:7.2f} s  Whisper on the answer WAV")
        print(f"heard back: {back}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
