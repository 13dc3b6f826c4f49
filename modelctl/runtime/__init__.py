"""Runtime loader: only locked, verified paths; never the network.

An application calls :func:`open_lock` at start-up and asks it for paths (or loaded
models). Every path handed out is a file of the lockfile, present on disk with the locked
size (``verify="fast"``, plus the record written by ``modelctl sync`` when there is one),
or with the locked content hash (``verify="full"``). Nothing here imports huggingface_hub
or any HTTP client: a missing file is an error naming ``modelctl sync`` as the fix.

The loaders (``load_llama``, ``load_tokenizer``, ``load_onnx``, ``load_kokoro``,
``load_whisper``) import their runtime lazily, so ``import modelctl.runtime`` costs
nothing extra. (faster-whisper imports huggingface_hub itself; ``load_whisper`` hands it
a folder of the locked files only, with ``local_files_only=True``: it never downloads.)
"""

from modelctl.runtime.kokoro import KokoroPaths
from modelctl.runtime.loader import (
    GgufPaths,
    LockedModels,
    NotSyncedError,
    UnknownAssetError,
    open_lock,
)
from modelctl.runtime.whisper import WhisperPaths

__all__ = [
    "GgufPaths",
    "KokoroPaths",
    "LockedModels",
    "NotSyncedError",
    "UnknownAssetError",
    "WhisperPaths",
    "open_lock",
]
