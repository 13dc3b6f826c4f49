"""The runtime stage's application: opens the locked models offline and loads one.

``modelctl.runtime.open_lock()`` reads the lockfile ($MODELCTL_LOCK) and hands out paths
in the tree ($MODELCTL_TARGET) only for files of the lock that are present with the locked
size (``MODELCTL_VERIFY=full`` hashes them too). It imports no HTTP client: a missing file
is an error naming ``modelctl sync``, never a download.

The app lists every locked file, then loads the Silero VAD with onnxruntime and runs it
on one second of silence and one of a loud tone, printing the speech probabilities.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

from modelctl.errors import ModelctlError
from modelctl.runtime import open_lock

RATE = 16_000  # Silero VAD: 16 kHz, 512-sample frames with 64 samples of context


def speech_probability(vad: Any, audio: list[float]) -> float:
    """The highest speech probability Silero VAD gives any 32 ms frame of ``audio``."""
    import numpy as np

    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros((1, 64), np.float32)
    samples = np.asarray(audio, np.float32)
    best = 0.0
    for i in range(0, len(samples) - 511, 512):
        x = np.concatenate([context, samples[None, i : i + 512]], axis=1)
        prob, state = vad.run(None, {"input": x, "state": state, "sr": np.array(RATE, np.int64)})
        context = x[:, -64:]
        best = max(best, float(prob[0, 0]))
    return best


def main() -> int:
    verify = "full" if os.environ.get("MODELCTL_VERIFY") == "full" else "fast"
    try:
        models = open_lock(verify=verify)
        for asset in models.assets():
            for name, path in sorted(models.files(asset).items()):
                print(f"{asset}/{name}: {path} ({path.stat().st_size} bytes)")
        # A real application loads its other models the same way, for example
        # models.load_llama("llm", n_ctx=2048) (needs the `llm` extra, llama-cpp-python).
        vad = models.load_onnx("vad")
    except ModelctlError as exc:  # not synced, not locked, unreadable lock: one message
        print(exc.render(), file=sys.stderr)
        return 1
    inputs = ", ".join(i.name for i in vad.get_inputs())
    print(f"loaded vad: onnxruntime {type(vad).__name__}, inputs {inputs}")
    silence = [0.0] * RATE
    tone = [0.5 * math.sin(2 * math.pi * 220 * t / RATE) for t in range(RATE)]
    print(
        f"vad: speech probability {speech_probability(vad, silence):.3f} on silence, "
        f"{speech_probability(vad, tone):.3f} on a 220 Hz tone"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
