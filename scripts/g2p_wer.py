"""Which text-to-phonemes front end makes Kokoro speak English that Whisper understands?

For each G2P variant and each Kokoro voice on this machine, Kokoro says a fixed set of
English sentences and Whisper tiny.en transcribes them; the score is the word error rate
(word-level edit distance / words said). Run: ``python -m scripts.g2p_wer``.

Variants:

* ``espeak-raw``: espeak-ng's IPA (phonemizer, ``en-us``, with stress), characters
  outside Kokoro's vocabulary dropped;
* ``espeak-misaki``: the same IPA mapped to Kokoro's own phoneme alphabet with misaki's
  espeak rules (diphthongs as one symbol, ``r`` -> ``ɹ``, no length marks, flaps):
  :class:`modelctl.runtime.kokoro.EspeakG2P`, what ``Kokoro.speak`` uses;
* ``misaki``: misaki's English G2P (lexicon + spaCy), when spaCy's ``en_core_web_sm``
  is installed (it is not on PyPI; see docs/assistant.md).
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from modelctl.runtime.kokoro import EspeakG2P, Kokoro, KokoroPaths
from scripts.assets import fetch_kokoro, fetch_whisper_tiny_en

SENTENCES = (
    "What color is the sky?",
    "The sky is blue.",
    "What do bees make?",
    "Bees make honey.",
    "What is the largest planet in the solar system?",
    "Jupiter is the largest planet.",
    "How many legs does a spider have?",
    "A spider has eight legs.",
    "Please turn off the kitchen light.",
    "The weather today is sunny and warm.",
)
#: Harder ones: r-coloured vowels, diphthongs, affricates, numbers in words.
HARD_SENTENCES = (
    "The judge chose the orange chair.",
    "Thirty birds were heard near the church.",
    "My brother bought a new guitar yesterday.",
    "Water boils at one hundred degrees.",
    "She sells sea shells by the sea shore.",
    "The Earth goes around the Sun once a year.",
    "Please call me tomorrow morning.",
    "Our teacher reads a story every night.",
    "The boy enjoyed the noisy toy.",
    "Could you open the window a little?",
)
SETS = {"basic": SENTENCES, "hard": HARD_SENTENCES}
STT_RATE = 16_000
VARIANTS = ("espeak-raw", "espeak-misaki", "misaki")


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def word_errors(said: Sequence[str], heard: Sequence[str]) -> int:
    """Word-level Levenshtein distance (substitutions, insertions, deletions)."""
    row = list(range(len(heard) + 1))
    for i, s in enumerate(said, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(heard, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (s != h))
    return row[-1]


def resample(audio: Any, src: int, dst: int) -> Any:
    import numpy as np

    n = int(len(audio) * dst / src)
    return np.interp(np.linspace(0, len(audio) - 1, n), np.arange(len(audio)), audio).astype(
        np.float32
    )


def variants(wanted: Sequence[str]) -> dict[str, Callable[[str], str]]:
    out: dict[str, Callable[[str], str]] = {}
    if "espeak-raw" in wanted:
        out["espeak-raw"] = EspeakG2P(map_to_kokoro=False)
    if "espeak-misaki" in wanted:
        out["espeak-misaki"] = EspeakG2P()
    if "misaki" not in wanted:
        return out
    try:
        from misaki import en  # type: ignore[import-not-found,import-untyped,unused-ignore]

        g2p = en.G2P(trf=False, british=False, fallback=None)
        out["misaki"] = lambda text: str(g2p(text)[0])
    except Exception as exc:  # noqa: BLE001 - report why the variant is missing, go on
        print(f"(misaki's English G2P is not available here: {type(exc).__name__}: {exc})")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--voices", nargs="*", default=None, help="default: every voice")
    parser.add_argument("--variants", nargs="*", default=None, help="default: every variant")
    parser.add_argument("--set", choices=sorted(SETS), default="basic", help="which sentences")
    args = parser.parse_args(argv)
    from faster_whisper import WhisperModel

    files = fetch_kokoro()
    tts = Kokoro.from_paths(KokoroPaths(files.model, files.tokenizer, dict(files.voices)))
    stt = WhisperModel(str(fetch_whisper_tiny_en()), device="cpu", compute_type="int8")
    voices = args.voices or sorted(tts.voices)
    chosen = variants(args.variants or VARIANTS)
    sentences = SETS[args.set]
    print(f"{len(sentences)} sentences, {sum(len(words(s)) for s in sentences)} words each run")
    print(f"{'g2p':<14} {'voice':<14} {'WER':>6}  {'s':>5}  worst")
    for name, g2p in chosen.items():
        for voice in voices:
            t0 = time.perf_counter()
            errors = total = 0
            worst = (0.0, "", "")
            for sentence in sentences:
                audio = tts.synthesize(tts.encode(g2p(sentence)), voice)
                segs, _ = stt.transcribe(
                    resample(audio, tts.sample_rate, STT_RATE), language="en", beam_size=1
                )
                heard = "".join(s.text for s in segs).strip()
                e = word_errors(words(sentence), words(heard))
                errors += e
                total += len(words(sentence))
                if e / len(words(sentence)) > worst[0]:
                    worst = (e / len(words(sentence)), sentence, heard)
            seconds = time.perf_counter() - t0
            print(
                f"{name:<14} {voice:<14} {errors / total:6.1%}  {seconds:5.1f}  "
                f"{worst[1]!r} -> {worst[2]!r}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
