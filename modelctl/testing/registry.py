"""A real OCI registry for tests and benchmarks: Debian's ``docker-registry`` (CNCF
Distribution 2.8) on 127.0.0.1, filesystem storage in a temporary folder.

Variants: plain HTTP; htpasswd basic auth (bcrypt, made with ``htpasswd -B`` from
apache2-utils); TLS with a certificate from a throwaway CA (made with ``openssl``), which
a client trusts with ``--ca-cert``. ``.ci/run`` installs the three Debian packages.
"""

from __future__ import annotations

import contextlib
import http.client
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

REGISTRY_BIN = "docker-registry"
START_TIMEOUT_S = 20.0


def available() -> str | None:
    """None if the registry (and htpasswd, openssl) can be run here, else what is missing."""
    missing = [b for b in (REGISTRY_BIN, "htpasswd", "openssl") if shutil.which(b) is None]
    return ", ".join(missing) or None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class TestCA:
    """A CA certificate and a server certificate it signed for 127.0.0.1 and localhost."""

    ca_cert: Path
    cert: Path
    key: Path


def make_ca(folder: Path) -> TestCA:
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=modelctl test CA")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return TestCA(folder / "ca.crt", folder / "server.crt", folder / "server.key")


def htpasswd_file(path: Path, users: dict[str, str]) -> Path:
    lines = []
    for user, password in users.items():
        done = subprocess.run(
            ["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True
        )
        lines.append(done.stdout.strip())
    path.write_text("\n".join(lines) + "\n")
    return path


class Registry:
    """``with Registry(folder) as reg:`` -> ``reg.address`` is ``127.0.0.1:<port>``."""

    def __init__(
        self,
        folder: Path,
        *,
        users: dict[str, str] | None = None,
        tls: TestCA | None = None,
        port: int | None = None,
    ) -> None:
        self.folder = folder
        self.storage = folder / "storage"
        self.users = users
        self.tls = tls
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = folder / "registry.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: {self.address}",
            "  secret: modelctl-test-secret",
        ]
        if self.tls is not None:
            lines += ["  tls:", f"    certificate: {self.tls.cert}", f"    key: {self.tls.key}"]
        if self.users is not None:
            pw = htpasswd_file(self.folder / "htpasswd", self.users)
            lines += ["auth:", "  htpasswd:", "    realm: modelctl-test", f"    path: {pw}"]
        return "\n".join(lines) + "\n"

    def start(self) -> Registry:
        self.folder.mkdir(parents=True, exist_ok=True)
        cfg = self.folder / "config.yml"
        cfg.write_text(self.config())
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(cfg)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._answers():
            if self._proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"docker-registry did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        conn: http.client.HTTPConnection
        if self.tls is not None:
            ctx = ssl.create_default_context(cafile=str(self.tls.ca_cert))
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=1, context=ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("GET", "/v2/")
            return conn.getresponse().status in (200, 401)
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes (to damage it in a test)."""
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(OSError):
            self.stop()
