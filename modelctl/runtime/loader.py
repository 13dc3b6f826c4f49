"""Resolve locked files to verified local paths (see the package docstring)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from modelctl.errors import InputError, VerificationError
from modelctl.lock import lockfile
from modelctl.lock.digest import digest_file
from modelctl.lock.types import ROLE_MODEL, ROLE_TOKENIZER, ROLE_VOICE, FileRef, Lock
from modelctl.project import find_lock
from modelctl.runtime.kokoro import Kokoro, KokoroPaths
from modelctl.runtime.whisper import FOLDER_FILES, MODEL_FILE, WhisperPaths, missing_files
from modelctl.settings import hf_cache_dir
from modelctl.store.layout import HfCacheStore, Store, TargetStore
from modelctl.store.presence import Presence, presence

if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    from modelctl.values import dataclass

Verify = Literal["fast", "full", "none"]


class UnknownAssetError(InputError, LookupError):
    """An asset or file that the lock does not hold (or holds disabled)."""

    label = "not locked"


class NotSyncedError(VerificationError, FileNotFoundError):
    """A locked file that is missing or differs on disk."""

    label = "not synced"


@dataclass(frozen=True)
class GgufPaths:
    model: Path
    tokenizer: dict[str, Path]  # repo path (e.g. "tokenizer.json") -> local path


def open_lock(
    path: str | os.PathLike[str] | None = None,
    *,
    target: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    verify: Verify = "fast",
    env: Mapping[str, str] | None = None,
) -> LockedModels:
    """Open a lockfile for loading.

    ``path``: the lockfile (default $MODELCTL_LOCK, else beside $MODELCTL_MANIFEST,
    else modelctl.lock here or above: :func:`modelctl.project.find_lock`).
    ``target``: a ``sync --target`` tree (default $MODELCTL_TARGET); else the HF cache
    (``cache_dir``, $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub).
    """
    env = os.environ if env is None else env
    lock_path = Path(path) if path is not None else find_lock(None, None, env, Path.cwd())
    lock = lockfile.load(lock_path)
    if target is None and env.get("MODELCTL_TARGET"):
        target = env["MODELCTL_TARGET"]
    store: Store
    if target is not None:
        store = TargetStore(Path(target))
    else:
        store = HfCacheStore(Path(cache_dir) if cache_dir is not None else hf_cache_dir(env))
    if verify not in ("fast", "full", "none"):
        raise ValueError(f"verify must be 'fast', 'full' or 'none', not {verify!r}")
    return LockedModels(lock, lock_path, store, verify)


class LockedModels:
    """The files of one lock, handed out only when present and verified."""

    def __init__(self, lock: Lock, lock_path: Path, store: Store, verify: Verify) -> None:
        self.lock = lock
        self.lock_path = lock_path
        self.store = store
        self.verify = verify
        self._verified: dict[FileRef, Path] = {}

    # -- what is locked ---------------------------------------------------------------
    def assets(self) -> list[str]:
        """Enabled assets that have files."""
        return sorted({r.asset for r in self.lock.files()})

    def _refs(self, asset: str) -> list[FileRef]:
        locked = self.lock.asset(asset)
        if locked is None:
            raise UnknownAssetError(
                f"asset {asset!r} is not in the lock",
                where=str(self.lock_path),
                hint="locked assets: " + (", ".join(self.assets()) or "(none)"),
            )
        if not locked.enabled:
            raise UnknownAssetError(
                f"asset {asset!r} is disabled in the manifest (enabled: false)",
                where=str(self.lock_path),
                hint="enable it, then run `modelctl lock` and `modelctl sync`",
            )
        refs = [r for r in self.lock.files() if r.asset == asset]
        if not refs:
            raise UnknownAssetError(
                f"asset {asset!r} declares no files (kind: {locked.kind})",
                where=str(self.lock_path),
            )
        return refs

    def _ref(self, asset: str, filename: str) -> FileRef:
        refs = self._refs(asset)
        for r in refs:
            if r.path == filename:
                return r
        raise UnknownAssetError(
            f"file {filename!r} is not locked for asset {asset!r}",
            where=str(self.lock_path),
            hint="locked files: " + ", ".join(r.path for r in refs),
        )

    # -- paths ------------------------------------------------------------------------
    def path(self, asset: str, filename: str) -> Path:
        return self._checked(self._ref(asset, filename))

    def files(self, asset: str) -> dict[str, Path]:
        return {r.path: self._checked(r) for r in self._refs(asset)}

    def _role(self, asset: str, role: str) -> list[FileRef]:
        return [r for r in self._refs(asset) if r.role == role]

    def gguf(self, asset: str) -> GgufPaths:
        models = [r for r in self._role(asset, ROLE_MODEL) if r.path.endswith(".gguf")]
        if len(models) != 1:
            raise UnknownAssetError(
                f"asset {asset!r} is not a gguf asset (needs exactly one .gguf model file)",
                where=str(self.lock_path),
            )
        tokenizer = {r.path: self._checked(r) for r in self._role(asset, ROLE_TOKENIZER)}
        return GgufPaths(self._checked(models[0]), tokenizer)

    def kokoro(self, asset: str) -> KokoroPaths:
        models = self._role(asset, ROLE_MODEL)
        tokenizers = self._role(asset, ROLE_TOKENIZER)
        if len(models) != 1 or len(tokenizers) != 1:
            raise UnknownAssetError(
                f"asset {asset!r} is not a kokoro asset (model + tokenizer.json expected)",
                where=str(self.lock_path),
            )
        voices = {Path(r.path).stem: self._checked(r) for r in self._role(asset, ROLE_VOICE)}
        return KokoroPaths(self._checked(models[0]), self._checked(tokenizers[0]), voices)

    def whisper(self, asset: str) -> WhisperPaths:
        """The CTranslate2 Whisper folder of an asset: the locked ``model.bin`` and the
        locked files beside it that faster-whisper reads (nothing else)."""
        refs = self._refs(asset)
        models = [r for r in refs if r.path.rsplit("/", 1)[-1] == MODEL_FILE]
        if len(models) != 1:
            raise UnknownAssetError(
                f"asset {asset!r} is not a Whisper (CTranslate2) asset: it locks "
                f"{len(models)} model.bin files, expected exactly one",
                where=str(self.lock_path),
                hint="locked files: " + ", ".join(r.path for r in refs),
            )
        folder = models[0].path.rpartition("/")[0]
        prefix = f"{folder}/" if folder else ""
        beside = {
            r.path.removeprefix(prefix): r
            for r in refs
            if r.path.startswith(prefix) and r.path.removeprefix(prefix) in FOLDER_FILES
        }
        missing = missing_files(set(beside))
        if missing:
            raise UnknownAssetError(
                f"asset {asset!r} lacks locked Whisper files beside {models[0].path}: "
                + ", ".join(missing),
                where=str(self.lock_path),
                hint="add them to the asset's `files:` (kind: stt locks model.bin, "
                "config.json, tokenizer.json and vocabulary.txt by default), then "
                "`modelctl lock` and `modelctl sync`",
            )
        return WhisperPaths(folder, {name: self._checked(r) for name, r in beside.items()})

    def _checked(self, ref: FileRef) -> Path:
        done = self._verified.get(ref)
        if done is not None:
            return done
        path = self.store.final_path(ref)
        where = ref.label()
        if self.verify != "none":
            self._check_file(ref, path, where)
        self._verified[ref] = path
        return path

    def _check_file(self, ref: FileRef, path: Path, where: str) -> None:
        seen = presence(self.store, ref)
        if seen.state == "missing":
            raise NotSyncedError(
                "locked file is not on disk",
                where=where,
                expected=str(path),
                actual="missing",
                hint="run `modelctl sync`",
            ) from seen.error
        if seen.state == "wrong-size":
            raise NotSyncedError(
                "locked file has the wrong size",
                where=where,
                expected=f"{ref.size} bytes",
                actual=f"{seen.size} bytes at {path}",
                hint="run `modelctl sync` to repair it",
            )
        if self.verify == "fast":
            self._check_record(ref, seen, where)
        if self.verify == "full":
            actual = digest_file(path, ref.digest.algorithm)
            if actual != ref.digest:
                raise NotSyncedError(
                    "locked file's content differs from the lock",
                    where=where,
                    expected=str(ref.digest),
                    actual=f"{actual} at {path}",
                    hint="run `modelctl sync` to replace it",
                )

    def _check_record(self, ref: FileRef, seen: Presence, where: str) -> None:
        """Refuse what the disk itself says is not the locked content, without reading it.

        - an HF cache snapshot link names its blob by digest: another name means the file
          was stored for another digest (the lock was edited, or another tool put it there);
        - a record written by sync for this very file (same inode) names the digest it was
          verified against and its size/mtime: another digest, or a change since, is refused.

        A file without a record, or a copy of one (another inode: ``COPY --from`` in a
        Docker build), passes on its size: fast mode never reads content, and never writes
        (the runtime may run on a read-only file system). ``verify="full"`` hashes.
        """
        path, record, stamp = seen.path, seen.record, seen.stamp
        if path.is_symlink() and os.path.basename(os.readlink(path)) != ref.digest.hex:
            raise NotSyncedError(
                "the cached file is stored under another digest than the lock's",
                where=where,
                expected=str(ref.digest),
                actual=f"blob {os.path.basename(os.readlink(path))} at {path}",
                hint="run `modelctl sync` (or check the lockfile: was it edited by hand?)",
            )
        if record is None or stamp is None or record.stamp.inode != stamp.inode:
            return
        if record.digest != ref.digest:
            raise NotSyncedError(
                "the file on disk was verified against another digest than the lock's",
                where=where,
                expected=str(ref.digest),
                actual=f"{record.digest} (recorded by sync) at {path}",
                hint="run `modelctl sync` (or check the lockfile: was it edited by hand?)",
            )
        if record.stamp != stamp:
            raise NotSyncedError(
                "locked file was modified after `modelctl sync` verified it",
                where=where,
                expected=f"size {record.stamp.size}, mtime_ns {record.stamp.mtime_ns}",
                actual=f"size {stamp.size}, mtime_ns {stamp.mtime_ns} at {path}",
                hint="run `modelctl verify --full` to check it, or `modelctl sync` to repair it",
            )

    # -- loaders (runtimes imported lazily) ------------------------------------------
    def load_llama(self, asset: str, **kwargs: Any) -> Any:
        """``llama_cpp.Llama(model_path=<locked gguf>, **kwargs)``."""
        import llama_cpp

        kwargs.setdefault("verbose", False)
        return llama_cpp.Llama(model_path=str(self.gguf(asset).model), **kwargs)

    def load_tokenizer(self, asset: str, filename: str = "tokenizer.json") -> Any:
        """``tokenizers.Tokenizer.from_file`` on the asset's locked tokenizer file."""
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(self.path(asset, filename)))

    def load_onnx(self, asset: str, filename: str | None = None, **kwargs: Any) -> Any:
        """``onnxruntime.InferenceSession`` on the asset's (only, or named) .onnx file."""
        import onnxruntime

        if filename is None:
            onnx = [r.path for r in self._refs(asset) if r.path.endswith(".onnx")]
            if len(onnx) != 1:
                raise UnknownAssetError(
                    f"asset {asset!r} has {len(onnx)} .onnx files; name one",
                    where=str(self.lock_path),
                    hint="locked .onnx files: " + (", ".join(onnx) or "(none)"),
                )
            filename = onnx[0]
        kwargs.setdefault("providers", ["CPUExecutionProvider"])
        return onnxruntime.InferenceSession(str(self.path(asset, filename)), **kwargs)

    def load_kokoro(self, asset: str) -> Kokoro:
        return Kokoro.from_paths(self.kokoro(asset))

    def load_whisper(self, asset: str, **kwargs: Any) -> Any:
        """``faster_whisper.WhisperModel`` on the asset's locked CTranslate2 folder.

        Opens exactly the locked files (see :meth:`whisper`), never the network;
        ``kwargs`` go to WhisperModel (``device``, ``compute_type``, ``cpu_threads``, ...).
        Needs the ``stt`` extra (faster-whisper).
        """
        from modelctl.runtime.whisper import load_whisper_files

        return load_whisper_files(self.whisper(asset), **kwargs)
