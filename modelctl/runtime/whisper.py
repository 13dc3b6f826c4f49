"""Whisper speech-to-text over faster-whisper (CTranslate2), from locked files only.

A CTranslate2 Whisper folder (the layout of Systran/faster-whisper-*) holds
``model.bin``, ``config.json``, ``tokenizer.json``, a vocabulary (``vocabulary.txt`` or
``vocabulary.json``) and, for some models, ``preprocessor_config.json``.

faster-whisper opens whatever a folder holds by those names, and asks the Hub for a
tokenizer when the folder has none. So the loader never hands it the snapshot folder:
it links exactly the locked files into a private temporary folder, loads (CTranslate2
reads the weights into memory, faster-whisper the tokenizer and feature settings), and
removes that folder again. A file that happens to lie beside the locked ones (another
tool's download, say) is never read, and nothing is ever downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from modelctl.values import dataclass

MODEL_FILE: Final = "model.bin"
REQUIRED: Final = ("model.bin", "config.json", "tokenizer.json")
VOCABULARIES: Final = ("vocabulary.txt", "vocabulary.json")
OPTIONAL: Final = ("preprocessor_config.json",)
#: Every name faster-whisper / CTranslate2 may open in a Whisper folder.
FOLDER_FILES: Final = (*REQUIRED, *VOCABULARIES, *OPTIONAL)
SAMPLE_RATE: Final = 16_000  # what transcribe() expects of a raw float32 array


@dataclass(frozen=True)
class WhisperPaths:
    """The locked files of one CTranslate2 Whisper folder: file name -> local path."""

    folder: str  # the folder inside the repo ("" for the repo's root)
    files: dict[str, Path]

    @property
    def model(self) -> Path:
        return self.files[MODEL_FILE]


def missing_files(names: set[str]) -> list[str]:
    """What a Whisper folder of ``names`` lacks (empty when it can be loaded)."""
    missing = [n for n in REQUIRED if n not in names]
    if not names & set(VOCABULARIES):
        missing.append(" or ".join(VOCABULARIES))
    return missing


def load_whisper_files(paths: WhisperPaths, **kwargs: Any) -> Any:
    """``faster_whisper.WhisperModel`` on exactly ``paths.files`` (see the module docstring).

    ``kwargs`` go to WhisperModel (``device``, ``compute_type``, ``cpu_threads``, ...);
    ``local_files_only`` is always True.
    """
    import tempfile  # here, not at import: `import modelctl.runtime` stays cheap

    from faster_whisper import WhisperModel

    kwargs["local_files_only"] = True
    with tempfile.TemporaryDirectory(prefix="modelctl-whisper-") as tmp:
        for name, path in sorted(paths.files.items()):
            os.symlink(os.path.abspath(path), os.path.join(tmp, name))
        return WhisperModel(tmp, **kwargs)
