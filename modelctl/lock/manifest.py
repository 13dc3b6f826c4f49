"""Read ``modelctl.yaml``: YAML -> schema check -> presets expanded into plain sources.

Presets (``kind``):

- ``files`` (default): ``repo`` + ``files`` (paths or globs).
- ``stt``: the same, for a CTranslate2 Whisper folder (faster-whisper); ``files``
  defaults to :data:`STT_DEFAULT_FILES` (the layout of Systran/faster-whisper-*; add
  ``preprocessor_config.json`` for models that ship one, e.g. large-v3).
- ``gguf``: one ``file`` (role ``model``) plus an optional ``tokenizer`` block naming
  another repo and its files (role ``tokenizer``; default files tokenizer.json and
  tokenizer_config.json). No block, ``tokenizer: null`` or an empty ``repo``: none.
- ``kokoro``: onnx-community/Kokoro-82M-v1.0-ONNX's layout: ``onnx/model[_variant].onnx``
  (role ``model``), ``tokenizer.json`` (role ``tokenizer``), ``voices/<name>.bin`` for
  each voice (role ``voice``).
- ``api``: a remote backend; declares no files, so it is skipped by lock, plan and sync.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, cast

from modelctl.errors import ManifestError
from modelctl.fs.paths import check_relpath
from modelctl.lock.types import (
    ROLE_FILE,
    ROLE_MODEL,
    ROLE_SIGNATURE,
    ROLE_TOKENIZER,
    ROLE_VOICE,
    SIGNATURE_DEFAULT_PATH,
    Asset,
    FileRequest,
    Manifest,
    RepoType,
    SignatureSpec,
    Source,
)
from modelctl.lock.yamldoc import YamlDoc, load_yaml, read_text, validate

DEFAULT_REVISION: Final = "main"
KOKORO_REPO: Final = "onnx-community/Kokoro-82M-v1.0-ONNX"
KOKORO_DEFAULT_VARIANT: Final = "quantized"
GGUF_TOKENIZER_FILES: Final = ("tokenizer.json", "tokenizer_config.json")
STT_DEFAULT_FILES: Final = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
SCHEMA: Final = "manifest.schema.json"


def kokoro_model_file(variant: str) -> str:
    """``fp32`` is ``onnx/model.onnx``; every other variant is ``onnx/model_<variant>.onnx``."""
    return "onnx/model.onnx" if variant == "fp32" else f"onnx/model_{variant}.onnx"


def load_manifest(path: Path) -> Manifest:
    return parse_manifest(read_text(path, ManifestError, "manifest"), str(path))


def parse_manifest(text: str, source: str = "modelctl.yaml") -> Manifest:
    doc = load_yaml(text, source, ManifestError)
    if doc.data is None:
        raise ManifestError(
            "the manifest is empty",
            where=source,
            hint="declare at least `assets: {}`; see manifests/speech-assistant.yaml",
        )
    validate(doc, SCHEMA, ManifestError, "manifest")
    data = cast(dict[str, Any], doc.data)
    assets = tuple(_expand(name, spec, doc) for name, spec in sorted(data["assets"].items()))
    return Manifest(source=source, endpoint=data.get("endpoint"), assets=assets)


def _expand(name: str, spec: dict[str, Any], doc: YamlDoc) -> Asset:
    kind = spec.get("kind", "files")
    where = doc.locate(["assets", name])
    revision = spec.get("revision", DEFAULT_REVISION)
    repo_type = cast(RepoType, spec.get("repo_type", "model"))
    sources: list[Source]
    if kind in ("files", "stt"):
        files = spec.get("files", list(STT_DEFAULT_FILES))  # the schema requires it for files
        requests = tuple(FileRequest(p, ROLE_FILE) for p in files)
        sources = [Source(spec["repo"], repo_type, revision, requests)]
    elif kind == "gguf":
        sources = [
            Source(spec["repo"], "model", revision, (FileRequest(spec["file"], ROLE_MODEL),))
        ]
        tok = spec.get("tokenizer") or {}
        if tok.get("repo"):
            files = tok.get("files", list(GGUF_TOKENIZER_FILES))
            tok_requests = tuple(FileRequest(p, ROLE_TOKENIZER) for p in files)
            sources.append(
                Source(tok["repo"], "model", tok.get("revision", DEFAULT_REVISION), tok_requests)
            )
    elif kind == "kokoro":
        variant = spec.get("variant", KOKORO_DEFAULT_VARIANT)
        requests = (
            FileRequest(kokoro_model_file(variant), ROLE_MODEL),
            FileRequest("tokenizer.json", ROLE_TOKENIZER),
            *(FileRequest(f"voices/{v}.bin", ROLE_VOICE) for v in spec.get("voices", [])),
        )
        sources = [Source(spec.get("repo", KOKORO_REPO), "model", revision, requests)]
    else:  # api: nothing to fetch
        sources = []
    signature = _signature(spec.get("signature"))
    if signature is not None:
        # The signature is a locked file of the asset's repo: sync and verify check it.
        main = sources[0]
        sources[0] = Source(
            main.repo_id,
            main.repo_type,
            main.revision,
            # First: the first request naming a file decides its role (a "*" matches it too).
            (FileRequest(signature.path, ROLE_SIGNATURE), *main.requests),
        )
    for src in sources:
        for req in src.requests:
            check_relpath(req.pattern, where=where, error=ManifestError)
    return Asset(
        name=name,
        kind=kind,
        enabled=spec.get("enabled", True),
        sources=_merge_sources(sources),
        line=where,
        signature=signature,
    )


def _signature(spec: dict[str, Any] | None) -> SignatureSpec | None:
    """The schema has checked the shape (exactly one way to trust it)."""
    if spec is None:
        return None
    return SignatureSpec(
        path=spec.get("path", SIGNATURE_DEFAULT_PATH),
        key=spec.get("key"),
        certificate_chain=tuple(spec.get("certificate_chain", ())),
        identity=spec.get("identity"),
        issuer=spec.get("issuer"),
    )


def _merge_sources(sources: list[Source]) -> tuple[Source, ...]:
    """One source per (repo_type, repo, revision), requests in declaration order."""
    merged: dict[tuple[str, str, str], Source] = {}
    for src in sources:
        prev = merged.get(src.key)
        if prev is None:
            merged[src.key] = src
        else:
            extra = tuple(
                r for r in src.requests if r.pattern not in {p.pattern for p in prev.requests}
            )
            merged[src.key] = Source(
                prev.repo_id, prev.repo_type, prev.revision, prev.requests + extra
            )
    return tuple(merged.values())
