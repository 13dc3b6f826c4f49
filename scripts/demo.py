"""``just demo``: the whole plan -> download -> load flow, offline, on real models.

1. builds a local Hub tree of REAL assets (tiny llama GGUF + tokenizer, Kokoro-82M int8
   ONNX with two voices, silero VAD) and serves it on 127.0.0.1;
2. runs ``modelctl lock``, ``modelctl plan`` and ``modelctl sync`` on
   ``manifests/demo.yaml`` as a user would (subprocesses, progress visible);
3. with the server stopped and ``HF_HUB_OFFLINE=1``, loads everything through
   :mod:`modelctl.runtime` and shows what each model produced.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import wave
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelctl.testing.hub import LocalHub
from scripts.assets import build_hub_tree

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_MANIFEST = REPO_ROOT / "manifests" / "demo.yaml"
# "konnichiwa, sekai" in the phoneme alphabet of Kokoro's Japanese voices
PHONEMES = "koɲɲitɕiwa, sekai. kiːte kɯdasai."
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

    print("== preparing real model files (tiny GGUF, Kokoro-82M int8, silero VAD) ...", flush=True)
    build_hub_tree(out / "hub")
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
    print(f"\n== server stopped after {requests} requests; loading offline (HF_HUB_OFFLINE=1)")
    os.environ["HF_HUB_OFFLINE"] = "1"
    load_everything(lock, hf_home / "hub", out)
    return 0


def load_everything(lock: Path, cache: Path, out: Path) -> None:
    from modelctl.runtime import open_lock

    t0 = time.perf_counter()
    models = open_lock(lock, cache_dir=cache, verify="full")
    for asset in models.assets():
        models.files(asset)
    print(f"locked files verified (full sha256/gitsha1) in {time.perf_counter() - t0:.2f} s")

    llm = models.load_llama("llm", n_ctx=256, n_threads=2, seed=0)
    result = llm("Hello from modelctl", max_tokens=16, temperature=0.0)
    n_tokens = result["usage"]["completion_tokens"]
    print(
        f"llm:  generated {n_tokens} tokens from {models.gguf('llm').model.name}: "
        f"{result['choices'][0]['text']!r}"
    )

    tokenizer = models.load_tokenizer("llm")
    ids = tokenizer.encode("Hello from modelctl").ids
    print(f"tokenizer: 'Hello from modelctl' -> {len(ids)} ids {ids[:8]}...")

    kokoro = models.load_kokoro("tts")
    token_ids = kokoro.encode(PHONEMES)
    audio = kokoro.synthesize(token_ids, "jf_alpha")
    wav = out / "kokoro-jf_alpha.wav"
    write_wav(wav, audio, kokoro.sample_rate)
    seconds = len(audio) / kokoro.sample_rate
    print(f"tts:  {len(token_ids)} phoneme tokens -> {seconds:.2f} s of 24 kHz audio -> {wav}")

    vad = models.load_onnx("vad")
    probs = speech_probabilities(vad, resample(audio, kokoro.sample_rate, VAD_RATE))
    speech = sum(p > 0.5 for p in probs)
    print(
        f"vad:  speech detected in {speech}/{len(probs)} frames of 32 ms "
        f"(max probability {max(probs):.2f})"
    )

    print("\nThe files are in the Hugging Face cache (shared with transformers, llama.cpp):")
    for asset in models.assets():
        for name, path in models.files(asset).items():
            print(f"  {asset:4} {name:32} {path}")


if __name__ == "__main__":
    raise SystemExit(main())
