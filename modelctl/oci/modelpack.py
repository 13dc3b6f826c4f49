"""The artifact ``modelctl push`` writes: a CNCF ModelPack manifest, built and read here
(pure: values in, bytes out, no I/O).

An OCI image manifest (``schemaVersion 2``) with ``artifactType``
``application/vnd.cncf.model.manifest.v1+json`` and a ModelPack config
(``application/vnd.cncf.model.config.v1+json``: ``descriptor``, ``modelfs`` with the
layers' digests as ``diffIds``, ``config``). Its layers, in this order:

1. the lockfile, as ``modelctl lock`` writes it (``...doc.v1.raw``, titled
   ``modelctl.lock``, ``dev.modelctl.role: lockfile``);
2. one raw layer per locked file (asset, path), sorted by asset, repo and path: the
   file's bytes as they are, digest = sha256 of the content. Weights are
   ``...weight.v1.raw``, docs ``...doc.v1.raw``, everything else (tokenizers, configs)
   ``...weight.config.v1.raw``. Annotations: ``org.cncf.model.filepath`` and
   ``org.opencontainers.image.title`` = ``<asset>/<path>`` (the ``--target`` layout, so
   ``oras pull`` or a Kubernetes image volume gives a tree ``modelctl.runtime`` opens),
   and ``dev.modelctl.{asset,source,digest}``: the asset, ``repo@commit:path`` and the
   locked digest (``gitsha1:`` for a regular file, whose sha256 the Hub does not have).

Two files with the same content share one blob (uploaded once). Nothing in the manifest
depends on time or on where it is pushed, so the same lock (and files) gives the same
manifest digest, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from modelctl.errors import InputError
from modelctl.lock.digest import Digest
from modelctl.lock.types import ROLE_MODEL, ROLE_TOKENIZER, ROLE_VOICE, FileRef

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE: Final = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_TYPE: Final = "application/vnd.cncf.model.config.v1+json"
WEIGHT_RAW: Final = "application/vnd.cncf.model.weight.v1.raw"
WEIGHT_CONFIG_RAW: Final = "application/vnd.cncf.model.weight.config.v1.raw"
DOC_RAW: Final = "application/vnd.cncf.model.doc.v1.raw"
ANN_FILEPATH: Final = "org.cncf.model.filepath"
ANN_TITLE: Final = "org.opencontainers.image.title"
ANN_ASSET: Final = "dev.modelctl.asset"
ANN_SOURCE: Final = "dev.modelctl.source"
ANN_DIGEST: Final = "dev.modelctl.lock.digest"
ANN_ROLE: Final = "dev.modelctl.role"
ANN_LOCK: Final = "dev.modelctl.lock"  # manifest annotation: sha256 of the lockfile's bytes
LOCK_TITLE: Final = "modelctl.lock"
WEIGHT_SUFFIXES: Final = frozenset(
    {
        ".safetensors", ".gguf", ".bin", ".onnx", ".pt", ".pth", ".ckpt", ".h5", ".msgpack",
        ".tflite", ".npz", ".npy", ".pb", ".mlmodel", ".ot", ".model", ".ggml", ".data",
    }
)  # fmt: skip
DOC_NAMES: Final = ("readme", "license", "licence", "notice", "copying", "model_card")


class ArtifactError(InputError):
    """An artifact modelctl cannot use: not ModelPack, not made by modelctl, malformed (2)."""

    label = "artifact error"


class ArtifactMismatchError(ArtifactError):
    """An artifact pushed from another lock than the project's (exit 2)."""

    label = "artifact mismatch"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def media_type(ref: FileRef) -> str:
    """The ModelPack layer type for a locked file, from its role, else its name."""
    if ref.role in (ROLE_MODEL, ROLE_VOICE):
        return WEIGHT_RAW
    if ref.role == ROLE_TOKENIZER:
        return WEIGHT_CONFIG_RAW
    name = ref.path.rsplit("/", 1)[-1].lower()
    stem, dot, suffix = name.rpartition(".")
    if (dot and f".{suffix}" in WEIGHT_SUFFIXES) or ".safetensors" in name:
        return WEIGHT_RAW
    if name.endswith(".md") or (stem or name).startswith(DOC_NAMES):
        return DOC_RAW
    return WEIGHT_CONFIG_RAW


def file_path(ref: FileRef) -> str:
    """Where the file goes in the artifact's tree: the ``--target`` layout."""
    return f"{ref.asset}/{ref.path}"


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str  # "sha256:<hex>" of the bytes
    size: int
    annotations: Mapping[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
            "annotations": dict(sorted(self.annotations.items())),
        }

    @property
    def title(self) -> str | None:
        return self.annotations.get(ANN_TITLE)


@dataclass(frozen=True)
class PushedFile:
    """A locked file as pushed: its locked ref, and the sha256 and size of its bytes."""

    ref: FileRef
    sha256: str  # "sha256:<hex>"
    size: int


def file_layer(f: PushedFile) -> Layer:
    path = file_path(f.ref)
    return Layer(
        media_type(f.ref),
        f.sha256,
        f.size,
        {
            ANN_FILEPATH: path,
            ANN_TITLE: path,
            ANN_ASSET: f.ref.asset,
            ANN_SOURCE: f.ref.where(),
            ANN_DIGEST: str(f.ref.digest),
        },
    )


def lock_layer(lock_bytes: bytes) -> Layer:
    return Layer(
        DOC_RAW,
        sha256_digest(lock_bytes),
        len(lock_bytes),
        {ANN_FILEPATH: LOCK_TITLE, ANN_TITLE: LOCK_TITLE, ANN_ROLE: "lockfile"},
    )


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class Built:
    manifest: bytes
    config: bytes
    layers: tuple[Layer, ...]  # the lock layer first

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)


def build(lock_bytes: bytes, files: Sequence[PushedFile], assets: Sequence[str]) -> Built:
    """The config and manifest bytes for a lock and its files (deterministic)."""
    ordered = sorted(files, key=lambda f: (f.ref.asset, f.ref.repo_type, f.ref.repo_id, f.ref.path))
    layers = (lock_layer(lock_bytes), *(file_layer(f) for f in ordered))
    lock_sha = sha256_digest(lock_bytes)
    config = _dumps(
        {
            "descriptor": {
                "name": "modelctl.lock",
                "title": f"modelctl lock {lock_sha}",
                "description": "assets: " + (", ".join(assets) or "none"),
            },
            "modelfs": {"type": "layers", "diffIds": [layer.digest for layer in layers]},
            "config": {},
        }
    )
    manifest = _dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": {
                "mediaType": CONFIG_TYPE,
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": [layer.to_json() for layer in layers],
            "annotations": {ANN_LOCK: lock_sha},
        }
    )
    return Built(manifest, config, layers)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Artifact:
    """A modelctl ModelPack manifest, read and checked."""

    lock_layer: Layer
    layers: tuple[Layer, ...]  # the file layers

    def layer_for(self, ref: FileRef) -> Layer | None:
        """The layer holding ``ref``'s content: its path's layer if it has the locked
        digest, else any layer with that content (a file the lock has twice)."""
        want = str(ref.digest)
        path = file_path(ref)
        candidates = [
            layer
            for layer in self.layers
            if layer.annotations.get(ANN_DIGEST) == want
            or (ref.digest.algorithm == "sha256" and layer.digest == want)
        ]
        for layer in candidates:
            if layer.annotations.get(ANN_FILEPATH) == path:
                return layer
        return candidates[0] if candidates else None


def parse(data: bytes, media: str, where: str) -> Artifact:
    """Check that ``data`` is a ModelPack manifest made by ``modelctl push``."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ArtifactError(f"the manifest is not JSON ({exc})", where=where) from None
    if not isinstance(doc, dict):
        raise ArtifactError("the manifest is not a JSON object", where=where)
    kind = doc.get("mediaType") or media
    if kind != OCI_MANIFEST or doc.get("schemaVersion") != 2:
        raise ArtifactError(
            f"not a ModelPack artifact: the manifest is {kind or 'of no media type'!s}",
            where=where,
            expected=f"{OCI_MANIFEST} (schemaVersion 2) with artifactType {ARTIFACT_TYPE}",
            hint="an image index or a Docker image is not a model artifact; push one with "
            "`modelctl push`",
        )
    raw_config = doc.get("config")
    config: dict[str, Any] = raw_config if isinstance(raw_config, dict) else {}
    artifact_type = doc.get("artifactType")
    if artifact_type != ARTIFACT_TYPE and config.get("mediaType") != CONFIG_TYPE:
        raise ArtifactError(
            "not a ModelPack artifact",
            where=where,
            expected=f"artifactType {ARTIFACT_TYPE}",
            actual=f"artifactType {artifact_type!r}, config {config.get('mediaType')!r}",
            hint="sync --from reads artifacts written by `modelctl push`",
        )
    layers = _layers(doc.get("layers"), where)
    locks = [
        layer
        for layer in layers
        if layer.title == LOCK_TITLE and layer.annotations.get(ANN_ROLE) == "lockfile"
    ]
    if len(locks) != 1:
        raise ArtifactError(
            "a ModelPack artifact, but not one `modelctl push` made: "
            + ("it has no modelctl.lock layer" if not locks else "it has two lockfile layers"),
            where=where,
            hint="sync --from needs the lockfile inside the artifact to check it against "
            "yours; push with `modelctl push`",
        )
    return Artifact(locks[0], tuple(layer for layer in layers if layer is not locks[0]))


def _layers(raw: object, where: str) -> list[Layer]:
    if not isinstance(raw, list):
        raise ArtifactError("the manifest has no layers list", where=where)
    layers = []
    for i, item in enumerate(raw):
        try:
            digest = str(item["digest"])
            Digest.parse(digest)
            size = item["size"]
            if not isinstance(size, int) or size < 0:
                raise ValueError(f"bad size {size!r}")
            annotations = item.get("annotations") or {}
            if not isinstance(annotations, dict):
                raise ValueError("annotations is not an object")
            layers.append(
                Layer(
                    str(item.get("mediaType", "")),
                    digest,
                    size,
                    {str(k): str(v) for k, v in annotations.items()},
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(
                f"layer {i} of the manifest is malformed: {exc}", where=where
            ) from None
        if not digest.startswith("sha256:"):
            raise ArtifactError(f"layer {i} has a non-sha256 digest {digest}", where=where)
    return layers
