"""Kokoro TTS over onnxruntime, for both input namings of Kokoro ONNX exports.

onnx-community/Kokoro-82M-v1.0-ONNX names its inputs ``input_ids``, ``style``, ``speed``
and its output ``waveform``; other exports say ``tokens`` and ``audio``. A voice file is
raw little-endian float32 shaped (-1, 1, 256); the style vector for a text of ``n`` token
ids (without padding) is row ``n`` of it.

Kokoro's tokenizer.json on the Hub has no model ``type`` and cannot be loaded by the
``tokenizers`` library (it rejects its post-processor); it is a character -> id map, so
the vocab is read directly, as Kokoro's own packages do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAMPLE_RATE = 24_000
STYLE_DIM = 256
PAD_ID = 0
_ID_INPUTS = ("input_ids", "tokens")
_AUDIO_OUTPUTS = ("waveform", "audio")


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


def read_vocab(tokenizer_json: Path) -> dict[str, int]:
    """The ``model.vocab`` map of a Kokoro tokenizer.json."""
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    vocab = data.get("model", {}).get("vocab") if isinstance(data, dict) else None
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise ValueError(f"{tokenizer_json} has no model.vocab map of phoneme -> id")
    return {str(k): int(v) for k, v in vocab.items()}
