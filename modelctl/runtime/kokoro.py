"""Kokoro TTS over onnxruntime, for both input namings of Kokoro ONNX exports.

onnx-community/Kokoro-82M-v1.0-ONNX names its inputs ``input_ids``, ``style``, ``speed``
and its output ``waveform``; other exports say ``tokens`` and ``audio``. A voice file is
raw little-endian float32 shaped (-1, 1, 256); the style vector for a text of ``n`` token
ids (without padding) is row ``n`` of it.

Kokoro's tokenizer.json on the Hub has no model ``type`` and cannot be loaded by the
``tokenizers`` library (it rejects its post-processor); it is a character -> id map, so
the vocab is read directly, as Kokoro's own packages do.

Text to speech: ``load_kokoro(asset).speak(text, voice)`` turns English text into
phonemes with :class:`EspeakG2P` (espeak-ng through ``phonemizer``, mapped to Kokoro's
phoneme alphabet with misaki's espeak rules), then synthesizes them. It needs the ``g2p``
extra (``phonemizer-fork`` and ``espeakng-loader``, which ships espeak-ng's library and
data: no system package needed). ``synthesize(encode(phonemes), voice)`` needs nothing
more than onnxruntime. See docs/assistant.md for why espeak and not misaki's lexicon.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelctl.errors import InputError

if TYPE_CHECKING:
    from dataclasses import dataclass, field
else:
    from modelctl.values import dataclass, field

SAMPLE_RATE = 24_000
STYLE_DIM = 256
PAD_ID = 0
_ID_INPUTS = ("input_ids", "tokens")
_AUDIO_OUTPUTS = ("waveform", "audio")
#: Kokoro's style tables have 510 rows and the ids are padded by one on each side.
MAX_IDS = 508
#: Silence between the chunks of a long text, in seconds.
CHUNK_PAUSE_S = 0.15


@dataclass(frozen=True)
class KokoroPaths:
    model: Path
    tokenizer: Path
    voices: dict[str, Path]  # voice name -> .bin


@dataclass
class Kokoro:
    session: Any  # onnxruntime.InferenceSession
    vocab: dict[str, int]  # phoneme character -> token id
    voices: dict[str, Any]  # name -> np.ndarray (n, 1, 256) float32
    ids_input: str
    sample_rate: int = SAMPLE_RATE
    g2p: Callable[[str], str] | None = field(default=None, repr=False)

    @classmethod
    def from_paths(cls, paths: KokoroPaths) -> Kokoro:
        import numpy as np
        import onnxruntime

        session = onnxruntime.InferenceSession(str(paths.model), providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        ids_input = next((n for n in _ID_INPUTS if n in names), None)
        if ids_input is None or not {"style", "speed"} <= names:
            raise ValueError(
                f"{paths.model} is not a Kokoro export: inputs {sorted(names)}, expected "
                "input_ids|tokens, style, speed"
            )
        voices = {
            name: np.fromfile(p, dtype="<f4").reshape(-1, 1, STYLE_DIM)
            for name, p in sorted(paths.voices.items())
        }
        return cls(session, read_vocab(paths.tokenizer), voices, ids_input)

    def encode(self, phonemes: str) -> list[int]:
        """Token ids (unpadded) of a phoneme string; characters not in the vocab are dropped."""
        return [self.vocab[c] for c in phonemes if c in self.vocab]

    def synthesize(self, token_ids: Sequence[int], voice: str, speed: float = 1.0) -> Any:
        """Audio (float32, mono, 24 kHz) for ``token_ids`` (without padding) in ``voice``."""
        import numpy as np

        if voice not in self.voices:
            raise KeyError(f"voice {voice!r} is not locked; locked voices: {sorted(self.voices)}")
        table = self.voices[voice]
        ids = list(token_ids)
        if not 0 < len(ids) < table.shape[0] - 1:
            raise ValueError(f"token count {len(ids)} out of range 1..{table.shape[0] - 2}")
        style = table[len(ids)].astype(np.float32)  # [1, 256]
        padded = np.array([[PAD_ID, *ids, PAD_ID]], dtype=np.int64)
        feeds = {
            self.ids_input: padded,
            "style": style,
            "speed": np.array([speed], dtype=np.float32),
        }
        outputs = self.session.run(None, feeds)
        names = [o.name for o in self.session.get_outputs()]
        index = next((names.index(n) for n in _AUDIO_OUTPUTS if n in names), 0)
        return np.asarray(outputs[index], dtype=np.float32).reshape(-1)

    def phonemes(self, text: str) -> str:
        """``text`` in Kokoro's phoneme alphabet (the ``g2p`` set, else :class:`EspeakG2P`)."""
        if self.g2p is None:
            self.g2p = EspeakG2P()
        return self.g2p(text)

    def speak(self, text: str, voice: str | None = None, speed: float = 1.0) -> Any:
        """Audio (float32, mono, :attr:`sample_rate`) of ``text`` said in ``voice``.

        ``voice`` may be left out when the lock holds one voice. Text longer than one
        Kokoro pass (:data:`MAX_IDS` phonemes) is said sentence by sentence, with a short
        pause between. Needs the ``g2p`` extra (see the module docstring).
        """
        import numpy as np

        if voice is None:
            if len(self.voices) != 1:
                raise KeyError(f"name a voice; locked voices: {sorted(self.voices)}")
            voice = next(iter(self.voices))
        chunks = [ids for part in split_sentences(text) for ids in self._chunks(part)]
        if not chunks:
            raise ValueError(f"nothing to say in {text!r}: no phoneme Kokoro knows")
        pause = np.zeros(int(CHUNK_PAUSE_S * self.sample_rate), np.float32)
        pieces: list[Any] = []
        for ids in chunks:
            if pieces:
                pieces.append(pause)
            pieces.append(self.synthesize(ids, voice, speed))
        return np.concatenate(pieces)

    def _chunks(self, sentence: str) -> list[list[int]]:
        """Token ids of one sentence, cut at spaces into pieces of at most MAX_IDS."""
        ids = self.encode(self.phonemes(sentence))
        space = self.vocab.get(" ")
        out: list[list[int]] = []
        while len(ids) > MAX_IDS:
            cut = max((i for i in range(MAX_IDS) if ids[i] == space), default=MAX_IDS)
            out.append(ids[: cut or MAX_IDS])
            ids = ids[(cut or MAX_IDS) :]
        if ids:
            out.append(ids)
        return [c for c in out if any(i != space for i in c)]


def split_sentences(text: str) -> list[str]:
    """``text`` cut after each ., ! or ? that ends a sentence; blank pieces dropped."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


# espeak-ng IPA -> Kokoro v1.0 (misaki) phonemes: misaki's EspeakFallback rules for US
# English (misaki/espeak.py, Apache-2.0). Kokoro writes diphthongs and affricates as one
# symbol (A = eɪ, I = aɪ, W = aʊ, Y = ɔɪ, O = oʊ, ʤ, ʧ), uses ɹ for r, no length marks,
# and T for the flap. Longest first: order matters.
_E2M: tuple[tuple[str, str], ...] = tuple(
    sorted(
        {
            "ʔˌn\u0329": "ʔn",
            "ʔn\u0329": "ʔn",
            "a^ɪ": "I",
            "a^ʊ": "W",
            "d^ʒ": "ʤ",
            "e^ɪ": "A",
            "e": "A",
            "t^ʃ": "ʧ",
            "ɔ^ɪ": "Y",
            "ə^l": "ᵊl",
            "ʲo": "jo",
            "ʲə": "jə",
            "ʲ": "",
            "ɚ": "əɹ",
            "r": "ɹ",
            "x": "k",
            "ç": "k",
            "ɐ": "ə",
            "ɬ": "l",
            "\u0303": "",
        }.items(),
        key=lambda kv: -len(kv[0]),
    )
)
_US_AFTER: tuple[tuple[str, str], ...] = (
    ("o^ʊ", "O"),
    ("ɜːɹ", "ɜɹ"),
    ("ɜː", "ɜɹ"),
    ("ɪə", "iə"),
    ("ː", ""),
    ("o", "ɔ"),  # espeak < 1.52 writes o for ɔ
    ("ɾ", "T"),
    ("ʔ", "t"),
    ("^", ""),
)


def espeak_to_kokoro(ipa: str) -> str:
    """espeak-ng's US English IPA (``tie="^"``) in Kokoro's phoneme alphabet."""
    for old, new in _E2M:
        ipa = ipa.replace(old, new)
    ipa = re.sub(r"(\S)\u0329", r"ᵊ\1", ipa).replace("\u0329", "")
    for old, new in _US_AFTER:
        ipa = ipa.replace(old, new)
    return ipa


class EspeakG2P:
    """English text -> Kokoro phonemes through espeak-ng (``phonemizer``).

    Uses espeak-ng from ``espeakng-loader`` when it is installed (its own library and
    data), else the system's ``libespeak-ng`` (Debian: ``espeak-ng``). With
    ``map_to_kokoro=False`` returns espeak's raw IPA (for comparison: Kokoro reads it
    less well, see scripts/g2p_wer.py).
    """

    def __init__(self, language: str = "en-us", *, map_to_kokoro: bool = True) -> None:
        try:
            from phonemizer.backend import EspeakBackend
            from phonemizer.backend.espeak.wrapper import EspeakWrapper
        except ImportError as exc:
            raise InputError(
                "Kokoro.speak needs a text-to-phonemes converter, and phonemizer is not installed",
                expected="the g2p extra (phonemizer-fork, espeakng-loader)",
                actual=str(exc),
                hint="pip install 'modelctl[g2p]', or pass phonemes to "
                "Kokoro.synthesize(Kokoro.encode(...))",
            ) from exc
        try:
            import espeakng_loader
        except ImportError:
            pass  # phonemizer then looks for the system's libespeak-ng
        else:
            EspeakWrapper.set_library(espeakng_loader.get_library_path())
            EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
        self.map_to_kokoro = map_to_kokoro
        self.backend = EspeakBackend(
            language=language,
            preserve_punctuation=True,
            with_stress=True,
            tie="^" if map_to_kokoro else False,
        )

    def __call__(self, text: str) -> str:
        said = self.backend.phonemize([text])
        ipa = said[0].strip() if said else ""
        return espeak_to_kokoro(ipa) if self.map_to_kokoro else ipa


def read_vocab(tokenizer_json: Path) -> dict[str, int]:
    """The ``model.vocab`` map of a Kokoro tokenizer.json."""
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    vocab = data.get("model", {}).get("vocab") if isinstance(data, dict) else None
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise ValueError(f"{tokenizer_json} has no model.vocab map of phoneme -> id")
    return {str(k): int(v) for k, v in vocab.items()}
