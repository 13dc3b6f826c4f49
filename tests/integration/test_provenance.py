"""Issue 22: OpenSSF Model Signing signatures, checked by `modelctl lock` against the real
local Hub, made by `modelctl sign`, and interoperable both ways with the `model_signing`
CLI (key and certificate methods, offline). Keys and certificates are made here with
`cryptography`."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from modelctl.cli import main
from modelctl.testing.hub import LocalHub
from tests.support.helpers import seeded_bytes, write_repo

if importlib.util.find_spec("model_signing") is None:
    if os.environ.get("MODELCTL_REQUIRE_SIGN") == "1":  # set by .ci/run: fail, not skip
        raise ImportError("model-signing is required here: pip install -e '.[sign]'")
    pytest.skip("needs the sign extra: pip install -e '.[sign]'", allow_module_level=True)

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

FILES = {
    "model.onnx": seeded_bytes(1, 6000),  # LFS
    "config.json": b'{"hidden": 64}',
    "tokenizer.json": b'{"tok": true}',
}
LFS = ("*.onnx",)
REPO = "org/signed"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ keys and certificates


@dataclass(frozen=True)
class Keys:
    private: Path
    public: Path


def make_key(folder: Path, name: str) -> Keys:
    key = ec.generate_private_key(ec.SECP256R1())
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Keys(private, public)


def key_fingerprint(public: Path) -> str:
    key = serialization.load_pem_public_key(public.read_bytes())
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class Certs:
    ca: Path  # the root (the chain consumers trust)
    leaf: Path  # the signing certificate
    key: Path  # the leaf's private key


def make_certs(folder: Path, *, leaf_days: tuple[int, int] = (-1, 30)) -> Certs:
    """A self-signed CA and a code-signing leaf valid from now+leaf_days[0] to now+leaf_days[1]."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelctl test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    keys = make_key(folder, "leaf")
    leaf_key = serialization.load_pem_private_key(keys.private.read_bytes(), None)
    assert isinstance(leaf_key, ec.EllipticCurvePrivateKey)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "publisher")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=leaf_days[0]))
        .not_valid_after(now + dt.timedelta(days=leaf_days[1]))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, leaf_path = folder / "ca.pem", folder / "leaf-cert.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaf_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return Certs(ca_path, leaf_path, keys.private)


# ------------------------------------------------------------------ the model_signing CLI


def model_signing(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model_signing", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def cli_sign_key(model: Path, keys: Keys, signature: Path | None = None) -> None:
    sig = signature or model / "model.sig"
    r = model_signing("sign", "key", model, "--private_key", keys.private, "--signature", sig)
    assert r.returncode == 0, r.stderr


def cli_sign_certificate(model: Path, certs: Certs) -> None:
    r = model_signing(
        "sign", "certificate", model, "--private_key", certs.key,
        "--signing_certificate", certs.leaf, "--certificate_chain", certs.ca,
        "--signature", model / "model.sig",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------ fixtures


@pytest.fixture
def trust(tmp_path: Path) -> Path:
    return tmp_path / "trust"


@pytest.fixture
def keys(trust: Path) -> Keys:
    return make_key(trust, "publisher")


@pytest.fixture
def repo_dir(hub_root: Path) -> Path:
    """The signed repo's folder on the local Hub (unsigned until a test signs it)."""
    return write_repo(hub_root, REPO, FILES, lfs_patterns=LFS)


@pytest.fixture
def project(tmp_path: Path, hf_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    monkeypatch.chdir(folder)
    # Sigstore's TUF client caches under XDG dirs and goes through HTTPS_PROXY: keep both
    # here, and the proxy dead on loopback, so no test ever leaves the machine.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return folder


def write_manifest(folder: Path, signature: str, files: str = "['*.onnx', '*.json']") -> None:
    (folder / "modelctl.yaml").write_text(
        f"assets:\n  m:\n    repo: {REPO}\n    files: {files}\n    signature:\n{signature}"
    )


def key_manifest(folder: Path, keys: Keys) -> None:
    write_manifest(folder, f"      key: {keys.public}\n")


def lock_data(folder: Path) -> dict[str, object]:
    data = yaml.safe_load((folder / "modelctl.lock").read_text())
    asset: dict[str, object] = data["assets"]["m"]
    return asset


# ------------------------------------------------------------------ lock, sync, verify


def test_a_signed_repo_locks_and_syncs_key_method(
    project: Path, repo_dir: Path, keys: Keys, hf_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_sign_key(repo_dir, keys)  # signed by the reference CLI
    key_manifest(project, keys)
    code, out, err = run(capsys, "lock")
    assert code == 0, err
    asset = lock_data(project)
    sig_bytes = (repo_dir / "model.sig").read_bytes()
    assert asset["signature"] == {
        "path": "model.sig",
        "sha256": sha256(sig_bytes),
        "method": "key",
        "identity": "public key " + key_fingerprint(keys.public),
    }
    files = {f["path"]: f for f in asset["sources"][0]["files"]}  # type: ignore[index]
    assert files["model.sig"]["role"] == "signature"  # a locked file: sync and verify check it
    assert set(files) == {"model.sig", *FILES}
    code, _, err = run(capsys, "sync")
    assert code == 0, err
    assert run(capsys, "verify", "--full")[0] == 0

    # The signature file is checked as any locked file: damage it in the cache.
    blob_path = next(p for p in (hf_env / "models--org--signed" / "blobs").iterdir())
    sig_blob = [
        p for p in (hf_env / "models--org--signed" / "blobs").iterdir()
        if p.read_bytes() == sig_bytes
    ]  # fmt: skip
    assert blob_path.exists() and len(sig_blob) == 1
    sig_blob[0].chmod(0o644)
    sig_blob[0].write_bytes(sig_bytes.replace(b"{", b"[", 1))
    code, out, err = run(capsys, "verify", "--full")
    assert code == 1 and "model.sig" in out + err


def test_a_signed_repo_locks_certificate_method(
    project: Path, repo_dir: Path, trust: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certs = make_certs(trust)
    cli_sign_certificate(repo_dir, certs)
    write_manifest(project, f"      certificate_chain: [{certs.ca}]\n")
    code, _, err = run(capsys, "lock")
    assert code == 0, err
    sig = lock_data(project)["signature"]
    assert sig["method"] == "certificate"  # type: ignore[index]
    assert str(sig["identity"]).startswith("certificate CN=publisher (sha256:")  # type: ignore[index]
    assert run(capsys, "sync")[0] == 0


def test_a_tampered_mirror_is_refused_at_lock_time(
    project: Path, repo_dir: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    """The mirror serves a config.json other than the one signed (its listing agrees with
    the bytes it serves, so only the signature can tell)."""
    cli_sign_key(repo_dir, keys)
    (repo_dir / "config.json").write_bytes(b'{"hidden": 65}')
    key_manifest(project, keys)
    code, _, err = run(capsys, "lock")
    assert code == 4, err
    assert "this file differs from the one that was signed" in err
    assert f"m: {REPO}@" in err and ":config.json" in err
    assert sha256(FILES["config.json"]) + " (signed)" in err
    assert sha256(b'{"hidden": 65}') + " (served by the Hub or mirror)" in err
    assert not (project / "modelctl.lock").exists()
    print(err)


def test_a_file_the_signature_does_not_cover_is_refused(
    project: Path, repo_dir: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_sign_key(repo_dir, keys)
    (repo_dir / "extra.json").write_bytes(b"{}")  # added after signing, matched by *.json
    key_manifest(project, keys)
    code, _, err = run(capsys, "lock")
    assert code == 4, err
    assert "the signature does not cover this file" in err and ":extra.json" in err


def test_a_missing_signature_is_refused(
    project: Path, repo_dir: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    key_manifest(project, keys)
    code, _, err = run(capsys, "lock")
    assert code == 4, err
    assert "the signature the manifest requires for asset 'm' is not in the repo" in err
    assert "model.sig" in err


def test_a_signature_over_other_files_is_refused(
    project: Path, repo_dir: Path, keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other-model"
    other.mkdir()
    (other / "weights.bin").write_bytes(b"other weights")
    cli_sign_key(other, keys, repo_dir / "model.sig")  # a valid signature, of other files
    key_manifest(project, keys)
    code, _, err = run(capsys, "lock")
    assert code == 4, err
    assert "the signature does not cover this file" in err


def test_a_signature_by_another_key_is_refused(
    project: Path, repo_dir: Path, keys: Keys, trust: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_sign_key(repo_dir, make_key(trust, "intruder"))
    key_manifest(project, keys)
    code, _, err = run(capsys, "lock")
    assert code == 4, err
    assert "the signature does not verify with the key the manifest trusts" in err
    assert ":model.sig" in err


def test_an_expired_certificate_is_refused(
    project: Path, repo_dir: Path, trust: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certs = make_certs(trust, leaf_days=(-10, -1))  # valid last week, expired yesterday
    cli_sign_certificate(repo_dir, certs)  # model_signing signs with it all the same
    r = model_signing(
        "verify", "certificate", repo_dir, "--signature", repo_dir / "model.sig",
        "--certificate_chain", certs.ca,
    )  # fmt: skip
    assert r.returncode == 0  # ... and verifies it (it checks at the certificate's start)
    write_manifest(project, f"      certificate_chain: [{certs.ca}]\n")
    code, _, err = run(capsys, "lock")
    assert code == 4, err
    assert "the certificate 'CN=publisher' of the signature has expired" in err
    assert "valid until" in err


def test_a_certificate_from_another_ca_is_refused(
    project: Path, repo_dir: Path, trust: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_sign_certificate(repo_dir, make_certs(trust / "a"))
    other = make_certs(trust / "b")
    write_manifest(project, f"      certificate_chain: [{other.ca}]\n")
    code, _, err = run(capsys, "lock")
    assert code == 4, err
    assert "does not verify with the certificate the manifest trusts" in err


def test_a_truncated_signature_is_refused(
    project: Path, repo_dir: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_sign_key(repo_dir, keys)
    sig = repo_dir / "model.sig"
    sig.write_bytes(sig.read_bytes()[: sig.stat().st_size // 2])
    key_manifest(project, keys)
    code, _, err = run(capsys, "lock")
    assert code == 4, err
    assert "not a Sigstore bundle (JSON); it may be truncated" in err


def test_a_signature_larger_than_the_cap_is_refused_unread(
    project: Path, repo_dir: Path, keys: Keys, local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from modelctl.provenance.oms import MAX_SIGNATURE_BYTES

    (repo_dir / "model.sig").write_bytes(b" " * (MAX_SIGNATURE_BYTES + 1))
    key_manifest(project, keys)
    local_hub.clear_requests()
    code, _, err = run(capsys, "lock")
    assert code == 4, err
    assert "the signature file is larger than modelctl reads" in err
    assert local_hub.count("GET", "model.sig") == 0  # refused from the listing's size


def test_keyless_sigstore_offline_is_reported_clearly(
    project: Path, repo_dir: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_sign_key(repo_dir, keys)  # any bundle: it is never reached
    write_manifest(
        project,
        "      identity: publisher@example.com\n      issuer: https://accounts.google.com\n",
    )
    code, _, err = run(capsys, "lock")
    assert code == 3, err
    assert "keyless (Sigstore) signatures can only be checked with network access" in err
    assert "this signature was NOT verified" in err
    assert not (project / "modelctl.lock").exists()


def test_a_manifest_with_two_ways_to_trust_is_refused(
    project: Path, repo_dir: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    write_manifest(project, f"      key: {keys.public}\n      certificate_chain: [x.pem]\n")
    code, _, err = run(capsys, "lock")
    assert code == 2, err


def test_a_missing_key_file_is_an_input_error(
    project: Path, repo_dir: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_sign_key(repo_dir, keys)
    write_manifest(project, "      key: keys/nope.pub\n")
    code, _, err = run(capsys, "lock")
    assert code == 2, err
    assert "the public key file the manifest names does not exist" in err
    assert str(project / "keys" / "nope.pub") in err


# ------------------------------------------------------------------ modelctl sign, interop


def synced_unsigned(project: Path, capsys: pytest.CaptureFixture[str], target: Path) -> None:
    (project / "modelctl.yaml").write_text(
        f"assets:\n  m:\n    repo: {REPO}\n    files: ['*.onnx', '*.json']\n"
    )
    assert run(capsys, "lock")[0] == 0
    assert run(capsys, "sync", "--target", str(target))[0] == 0


def test_modelctl_sign_key_verifies_with_the_model_signing_cli_and_with_lock(
    project: Path, repo_dir: Path, keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "tree"
    synced_unsigned(project, capsys, target)
    code, out, err = run(capsys, "sign", "--key", str(keys.private), "--target", str(target))
    assert code == 0, err
    assert "wrote model.sig (key signature)" in out
    sig = project / "model.sig"
    # The reference CLI verifies it over the synced files (a folder of exactly them).
    r = model_signing(
        "verify", "key", target / "m", "--signature", sig, "--public_key", keys.public
    )
    assert r.returncode == 0, r.stdout + r.stderr
    # Published beside the files (a new commit), it locks with modelctl.
    (repo_dir / "model.sig").write_bytes(sig.read_bytes())
    key_manifest(project, keys)
    code, _, err = run(capsys, "lock", "--upgrade")
    assert code == 0, err
    assert lock_data(project)["signature"]["method"] == "key"  # type: ignore[index]
    # A file changed after signing: the CLI refuses, as modelctl would.
    (target / "m" / "config.json").chmod(0o644)
    (target / "m" / "config.json").write_bytes(b"{}")
    r = model_signing(
        "verify", "key", target / "m", "--signature", sig, "--public_key", keys.public
    )
    assert r.returncode != 0


def test_modelctl_sign_certificate_verifies_with_the_model_signing_cli(
    project: Path, repo_dir: Path, trust: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "tree"
    synced_unsigned(project, capsys, target)
    certs = make_certs(trust)
    out_sig = tmp_path / "cert.sig"
    code, _, err = run(
        capsys, "sign", "--key", str(certs.key), "--certificate", str(certs.leaf),
        "--chain", str(certs.ca), "--target", str(target), "-o", str(out_sig),
    )  # fmt: skip
    assert code == 0, err
    r = model_signing(
        "verify", "certificate", target / "m", "--signature", out_sig,
        "--certificate_chain", certs.ca,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    (repo_dir / "model.sig").write_bytes(out_sig.read_bytes())
    write_manifest(project, f"      certificate_chain: [{certs.ca}]\n")
    assert run(capsys, "lock", "--upgrade")[0] == 0


def test_modelctl_sign_refuses_files_that_differ_from_the_lock(
    project: Path, repo_dir: Path, keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "tree"
    synced_unsigned(project, capsys, target)
    (target / "m" / "tokenizer.json").chmod(0o644)
    (target / "m" / "tokenizer.json").write_bytes(b'{"tok": false}')
    code, _, err = run(capsys, "sign", "--key", str(keys.private), "--target", str(target))
    assert code == 4, err
    assert "a file to sign differs from the lock" in err and "tokenizer.json" in err
    assert not (project / "model.sig").exists()


def test_modelctl_sign_needs_synced_files(
    project: Path, repo_dir: Path, keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "modelctl.yaml").write_text(
        f"assets:\n  m:\n    repo: {REPO}\n    files: ['*.json']\n"
    )
    assert run(capsys, "lock")[0] == 0
    code, _, err = run(capsys, "sign", "--key", str(keys.private))
    assert code == 2, err
    assert "run `modelctl sync` first" in err


def test_the_signature_bundle_is_the_reference_format(
    project: Path, repo_dir: Path, keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """modelctl's bundle and the CLI's for the same files list the same resources."""
    target = tmp_path / "tree"
    synced_unsigned(project, capsys, target)
    assert run(capsys, "sign", "--key", str(keys.private), "--target", str(target))[0] == 0
    cli_sig = tmp_path / "cli.sig"
    cli_sign_key(target / "m", keys, cli_sig)

    def resources(path: Path) -> list[dict[str, str]]:
        import base64

        bundle = json.loads(path.read_text())
        payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        return sorted(payload["predicate"]["resources"], key=lambda r: r["name"])

    assert resources(project / "model.sig") == resources(cli_sig)
