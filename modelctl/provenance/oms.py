"""OpenSSF Model Signing (OMS): check a signature against the lock, and make one.

An OMS signature (``model.sig``) is a Sigstore bundle whose DSSE payload is an in-toto
statement listing every file of a model with its SHA-256. Checking one needs no model
files: the cryptography is checked by the ``model-signing`` package (the reference
implementation; the ``sign`` extra), which hands back the signed file list, and that list
is compared with the SHA-256s the lock recorded (from the Hub, for every file). Signing
builds the same statement from SHA-256s (computed from files on disk by the caller) and
signs it with model-signing's own signers, so the ``model_signing`` CLI verifies it.

``model_signing`` is imported by the functions that use it (it loads sigstore, pydantic and
cryptography: far too much for a start-up that checks no signature). Its errors are many
types (ValueError, KeyError, cryptography's InvalidSignature, pyOpenSSL's store errors,
sigstore's errors), so each call into it is wrapped: anything it raises is translated into
one :class:`~modelctl.errors.IntegrityError` naming the signature and the cause.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import importlib
import json
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

from modelctl.errors import InputError, IntegrityError, NetworkError
from modelctl.fs.atomic import atomic_write
from modelctl.lock.digest import Digest
from modelctl.lock.types import LockedFile, SignatureSpec

# A signature lists each file with a ~150-byte entry: 16 MiB is 100,000 files. Anything
# larger is refused before it is read (a mirror must not make lock read gigabytes).
MAX_SIGNATURE_BYTES: Final = 16 * 1024 * 1024
# What the model_signing CLI leaves out of a signature by default (besides the signature).
OMS_IGNORED: Final = (".git", ".gitattributes", ".github", ".gitignore")
INSTALL_HINT: Final = "install the signing extra: pip install 'modelctl[sign]'"


@dataclass(frozen=True)
class Signed:
    """What a verified signature says: each signed file's SHA-256, and who signed it."""

    files: Mapping[str, Digest]
    identity: str


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise InputError(
            "checking or making OpenSSF Model Signing signatures needs the model-signing package",
            actual=f"cannot import {name}: {exc}",
            hint=INSTALL_HINT,
        ) from exc


def verify(data: bytes, spec: SignatureSpec, base: Path, where: str) -> Signed:
    """Check ``data`` (the signature file's bytes) as ``spec`` says to trust it.

    Key and certificate paths in ``spec`` are relative to ``base`` (the manifest's folder).
    Raises IntegrityError (exit 4) for a signature that does not verify, InputError for a
    trust file that cannot be read, NetworkError when keyless verification cannot reach
    Sigstore."""
    if len(data) > MAX_SIGNATURE_BYTES:
        raise IntegrityError(
            "the signature file is larger than modelctl reads",
            where=where,
            expected=f"at most {MAX_SIGNATURE_BYTES} bytes",
            actual=f"{len(data)} bytes",
            hint="a signature is a few kB per thousand files: this one is not a signature",
        )
    bundle = _bundle_json(data, where)
    if spec.method == "key":
        assert spec.key is not None
        key = _trust_file(base, spec.key, "public key", where)
        identity = "public key " + _key_fingerprint(key, where)
        module = _import("model_signing._signing.sign_ec_key")
        verifier = _guarded(
            lambda: module.Verifier(key), "the public key cannot be used", where, InputError
        )
        reader = _import("model_signing._signing.sign_sigstore_pb").Signature
    elif spec.method == "certificate":
        chain = [_trust_file(base, c, "certificate", where) for c in spec.certificate_chain]
        identity = _check_certificates(bundle, where)
        verifier = _guarded(
            lambda: _import("model_signing._signing.sign_certificate").Verifier(chain),
            "the certificate chain cannot be read",
            where,
            InputError,
        )
        reader = _import("model_signing._signing.sign_sigstore_pb").Signature
    else:
        identity = f"{spec.identity} (issuer {spec.issuer})"
        verifier = _sigstore_verifier(spec, where)
        reader = _import("model_signing._signing.sign_sigstore").Signature
    with tempfile.TemporaryDirectory(prefix="modelctl-sig-") as tmp:
        path = Path(tmp) / "model.sig"
        path.write_bytes(data)
        signature = _guarded(lambda: reader.read(path), "the signature cannot be read", where)
        manifest = _guarded(
            lambda: verifier.verify(signature),
            f"the signature does not verify with the {spec.method} the manifest trusts",
            where,
        )
    return Signed(_signed_files(manifest, where), identity)


def _guarded(
    call: Callable[[], Any],
    message: str,
    where: str,
    error: type[IntegrityError] | type[InputError] = IntegrityError,
) -> Any:
    """``call()``, with whatever model_signing raises translated into one error."""
    try:
        return call()
    except (IntegrityError, InputError, NetworkError):
        raise
    except Exception as exc:  # the library raises many types: each is translated
        hint = (
            "the signature was made by another key or certificate, for other files, or was "
            "damaged; do not use these files until the publisher confirms them"
            if error is IntegrityError
            else "check the key or certificate file (PEM, elliptic curve)"
        )
        raise error(
            message, where=where, actual=f"{type(exc).__name__}: {exc}"[:300], hint=hint
        ) from exc


def _bundle_json(data: bytes, where: str) -> dict[str, Any]:
    try:
        bundle = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IntegrityError(
            "the signature file is not a Sigstore bundle (JSON); it may be truncated",
            where=where,
            expected="an OpenSSF Model Signing signature (model_signing sign ...)",
            actual=f"{len(data)} bytes that do not parse: {exc}",
            hint="fetch the signature again, or ask the publisher for a complete one",
        ) from exc
    if not isinstance(bundle, dict) or not isinstance(bundle.get("verificationMaterial"), dict):
        raise IntegrityError(
            "the signature file is not a Sigstore bundle",
            where=where,
            expected="a JSON object with verificationMaterial and dsseEnvelope",
            actual=f"JSON {type(bundle).__name__}",
        )
    return bundle


def _trust_file(base: Path, name: str, what: str, where: str) -> Path:
    path = base / name
    if not path.is_file():
        raise InputError(
            f"the {what} file the manifest names does not exist",
            where=where,
            expected=f"a PEM file at {path}",
            hint="fix signature: in the manifest (paths are relative to its folder)",
        )
    return path


def _key_fingerprint(path: Path, where: str) -> str:
    """``sha256:`` of the key's DER SubjectPublicKeyInfo (``openssl pkey -pubin -outform
    DER | sha256sum``)."""
    serialization = _import("cryptography.hazmat.primitives.serialization")
    key = _guarded(
        lambda: serialization.load_pem_public_key(path.read_bytes()),
        "the public key file is not a PEM public key",
        where,
        InputError,
    )
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _check_certificates(bundle: dict[str, Any], where: str) -> str:
    """The signing certificate's subject and fingerprint, after checking that no
    certificate of the bundle's chain is expired or not yet valid now.

    model_signing checks the chain at the signing certificate's start date (a signature
    carries no trusted time); without a trusted timestamp, modelctl does not accept a
    signature whose certificate has expired since."""
    x509 = _import("cryptography.x509")
    material = bundle.get("verificationMaterial", {})
    chain = material.get("x509CertificateChain", {}).get("certificates", [])
    if not isinstance(chain, list) or not chain:
        raise IntegrityError(
            "the signature carries no certificate chain",
            where=where,
            expected="a signature made with `model_signing sign certificate`",
            actual="a bundle without verificationMaterial.x509CertificateChain",
            hint="the manifest trusts a certificate chain: check the signing method",
        )
    now = dt.datetime.now(dt.timezone.utc)
    certs = []
    for entry in chain:
        try:
            raw = base64.b64decode(entry["rawBytes"], validate=True)
            certs.append(x509.load_der_x509_certificate(raw))
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise IntegrityError(
                "a certificate in the signature cannot be read",
                where=where,
                actual=f"{type(exc).__name__}: {exc}"[:300],
            ) from exc
    for cert in certs:
        subject = cert.subject.rfc4514_string()
        if cert.not_valid_after_utc < now:
            raise IntegrityError(
                f"the certificate {subject!r} of the signature has expired",
                where=where,
                expected="a certificate valid now",
                actual=f"valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC",
                hint="ask the publisher to sign again with a valid certificate",
            )
        if cert.not_valid_before_utc > now:
            raise IntegrityError(
                f"the certificate {subject!r} of the signature is not valid yet",
                where=where,
                expected="a certificate valid now",
                actual=f"valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC",
            )
    leaf = certs[0]
    fingerprint = leaf.fingerprint(_import("cryptography.hazmat.primitives.hashes").SHA256())
    return f"certificate {leaf.subject.rfc4514_string()} (sha256:{fingerprint.hex()})"


def _sigstore_verifier(spec: SignatureSpec, where: str) -> Any:
    module = _import("model_signing._signing.sign_sigstore")
    try:
        return module.Verifier(identity=spec.identity, oidc_issuer=spec.issuer)
    except Exception as exc:  # sigstore's TUF client raises its own types
        raise NetworkError(
            "keyless (Sigstore) signatures can only be checked with network access to "
            "Sigstore, which could not be reached: this signature was NOT verified",
            where=where,
            expected="the Sigstore trust root from tuf-repo-cdn.sigstore.dev",
            actual=f"{type(exc).__name__}: {exc}"[:300],
            hint="run `modelctl lock` where Sigstore is reachable, or have the publisher "
            "sign with a key or certificate (signature: key / certificate_chain)",
        ) from exc


def _signed_files(manifest: Any, where: str) -> dict[str, Digest]:
    params = manifest.serialization_type
    method, hash_type = params.get("method"), params.get("hash_type")
    if method != "files" or hash_type != "sha256":
        raise IntegrityError(
            "the signature does not list each file's SHA-256",
            where=where,
            expected="serialization method 'files' with hash 'sha256' (model_signing's default)",
            actual=f"method {method!r}, hash {hash_type!r}",
            hint="ask the publisher to sign per file with SHA-256: modelctl compares those "
            "with the lock",
        )
    files: dict[str, Digest] = {}
    for rd in manifest.resource_descriptors():
        files[str(rd.identifier)] = Digest("sha256", rd.digest.digest_hex)
    return files


def check_covered(
    signed: Signed, files: Iterable[LockedFile], signature_path: str, here: Callable[[str], str]
) -> None:
    """Every locked file (but the signature) is signed, with the SHA-256 the lock holds."""
    for f in files:
        if f.path == signature_path:
            continue
        locked = f.content_sha256
        if f.path not in signed.files:
            raise IntegrityError(
                "the signature does not cover this file",
                where=here(f.path),
                expected=f"a file the signature lists ({len(signed.files)} files)",
                actual=f"{f.path} is locked but not signed",
                hint="lock only the files the publisher signed (list them instead of a glob), "
                "or ask the publisher to sign this one",
            )
        if locked != signed.files[f.path]:
            raise IntegrityError(
                "this file differs from the one that was signed",
                where=here(f.path),
                expected=f"{signed.files[f.path]} (signed)",
                actual=f"{locked} (served by the Hub or mirror)",
                hint="the server's file is not the publisher's: do not use this mirror or revision",
            )


def sign(
    files: Mapping[str, Digest],
    model_name: str,
    signature_path: str,
    out: Path,
    *,
    key: Path,
    certificate: Path | None = None,
    chain: Sequence[Path] = (),
    password: str | None = None,
) -> None:
    """Write an OMS signature over ``files`` (path -> SHA-256) to ``out``, as
    ``model_signing sign key`` (or ``sign certificate``) would for a folder holding exactly
    these files: per-file SHA-256, ``signature_path`` and git files ignored."""
    manifest_mod = _import("model_signing.manifest")
    hashing = _import("model_signing._hashing.hashing")
    payload_mod = _import("model_signing._signing.signing")
    items = [
        manifest_mod.FileManifestItem(
            path=PurePosixPath(p), digest=hashing.Digest("sha256", bytes.fromhex(d.hex))
        )
        for p, d in sorted(files.items())
    ]
    ignored = [signature_path, *OMS_IGNORED]
    serialization = manifest_mod._FileSerialization("sha256", False, ignored)
    manifest = manifest_mod.Manifest(model_name, items, serialization)
    where = str(key)
    if certificate is None:
        module = _import("model_signing._signing.sign_ec_key")
        signer = _guarded(
            lambda: module.Signer(key, password),
            "the private key cannot be used",
            where,
            InputError,
        )
    else:
        module = _import("model_signing._signing.sign_certificate")
        signer = _guarded(
            lambda: module.Signer(key, certificate, list(chain)),
            "the private key or certificates cannot be used",
            where,
            InputError,
        )
    signature = _guarded(
        lambda: signer.sign(payload_mod.Payload(manifest)), "signing failed", where, InputError
    )
    atomic_write(out, signature.bundle.to_json().encode("utf-8"))
