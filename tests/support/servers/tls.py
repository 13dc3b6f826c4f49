"""A test certificate authority and a server certificate for loopback, made with ``openssl``.

What a corporate TLS-intercepting proxy or a private mirror looks like to a client: a
certificate chain no public store trusts. Clients trust it through ``SSL_CERT_FILE`` (as
huggingface_hub's httpx2 session does). The certificate names ``127.0.0.1``, ``::1`` and
``localhost``, so the local Hub's "other origin" redirects verify too.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CertAuthority:
    ca_cert: Path  # give this to clients (SSL_CERT_FILE)
    server_cert: Path  # the chain the server presents
    server_key: Path

    @property
    def server(self) -> tuple[Path, Path]:
        """``LocalHub(tls=...)``'s argument."""
        return self.server_cert, self.server_key


def make_test_ca(folder: Path, days: int = 2) -> CertAuthority:
    """A fresh CA and a server certificate it signed, in ``folder``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is not installed (apt-get install openssl)")
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = folder / "ca.key", folder / "ca.pem"
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.pem"
    ext = folder / "server.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
    )

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(ca_key), "-out", str(ca_cert), "-days", str(days),
        "-subj", "/CN=modelctl test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")  # fmt: skip
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", str(days), "-extfile", str(ext))  # fmt: skip
    return CertAuthority(ca_cert, cert, key)
