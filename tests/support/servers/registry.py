"""A real OCI registry for tests and benchmarks: Debian's ``docker-registry`` (CNCF
Distribution 2.8) on 127.0.0.1, filesystem storage in a temporary folder.

Variants: plain HTTP; Bearer tokens from a :class:`TokenServer` (the distribution spec's
token flow); htpasswd basic auth (bcrypt, made with ``htpasswd -B`` from apache2-utils);
TLS with a certificate from a throwaway CA (made with ``openssl``), which a client trusts
with ``--ca-cert``. ``.ci/run`` installs these Debian packages.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
        token: TokenServer | None = None,
        port: int | None = None,
    ) -> None:
        self.folder = folder
        self.storage = folder / "storage"
        self.users = users
        self.tls = tls
        self.token = token
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
        elif self.token is not None:
            t = self.token
            lines += ["auth:", "  token:", f"    realm: {t.realm}", f"    service: {t.service}",
                      f"    issuer: {t.issuer}", f"    rootcertbundle: {t.cert}"]  # fmt: skip
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


# --------------------------------------------------------------------------- a proxy


@dataclass
class ProxyLog:
    """What went through the proxy: one (method, path, status, body bytes sent) per request."""

    requests: list[tuple[str, str, int, int]]

    @property
    def bytes_down(self) -> int:
        return sum(r[3] for r in self.requests)


class Proxy:
    """An HTTP proxy in front of a :class:`Registry` (as its clients see it: same API),
    counting requests and bytes, with faults for tests:

    - ``drop_blob_after=N``: the first blob GET answering more than N bytes is cut after N
      bytes (the connection closed), as a registry or load balancer dropping mid-blob;
    - ``redirect_blobs=URL``: blob GETs answer ``307 Location: URL/<digest>?sig=...``, as
      S3-backed registries do (``BlobStore`` serves them and records the headers it got);
      ``redirect_digests``: only these blobs; ``location=TEXT``: that Location, as is (a
      hostile one: ``http://127.0.0.1:99999/x``);
    - ``redirect_manifests``: manifest GETs answer ``307`` to the registry itself (another
      origin: the upstream's port), as registries serving manifests from a CDN do;
    - ``bearer_token=TEXT``: the proxy asks for Bearer auth (``GET /v2/`` -> 401 with a
      realm on the proxy) and its ``/token`` hands out TEXT, whatever it is (CR/LF ...).
    """

    def __init__(
        self,
        upstream: Registry,
        *,
        drop_blob_after: int | None = None,
        redirect_blobs: str | None = None,
        redirect_digests: set[str] | None = None,
        location: str | None = None,
        redirect_manifests: bool = False,
        bearer_token: str | None = None,
    ) -> None:
        self.upstream = upstream
        self.drop_blob_after = drop_blob_after
        self.redirect_blobs = redirect_blobs
        self.redirect_digests = redirect_digests
        self.location = location
        self.redirect_manifests = redirect_manifests
        self.bearer_token = bearer_token
        self.log = ProxyLog([])
        self.dropped = 0
        self._server: ThreadingHTTPServer | None = None
        self.address = ""

    def start(self) -> Proxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                path = self.path
                if proxy.bearer_token is not None and self._bearer(path):
                    return
                digest = path.rsplit("/", 1)[1]
                if (
                    (proxy.redirect_blobs or proxy.location)
                    and self.command == "GET"
                    and "/blobs/sha256:" in path
                    and (proxy.redirect_digests is None or digest in proxy.redirect_digests)
                ):
                    where = proxy.location or f"{proxy.redirect_blobs}/{digest}?sig=test"
                    self._redirect(path, where)
                    return
                if proxy.redirect_manifests and self.command == "GET" and "/manifests/" in path:
                    self._redirect(path, f"http://{proxy.upstream.address}{path}")
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                cut = (
                    proxy.drop_blob_after is not None
                    and proxy.dropped == 0
                    and self.command == "GET"
                    and "/blobs/sha256:" in path
                    and resp.status in (200, 206)
                    and len(data) > proxy.drop_blob_after
                )
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                sent = data[: proxy.drop_blob_after] if cut else data
                if self.command != "HEAD":
                    self.wfile.write(sent)
                proxy.log.requests.append((self.command, path, resp.status, len(sent)))
                if cut:
                    proxy.dropped += 1
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _redirect(self, path: str, location: str) -> None:
                self.send_response(307)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                proxy.log.requests.append((self.command, path, 307, 0))

            def _bearer(self, path: str) -> bool:
                """The Bearer flow with a hostile token; True if answered here."""
                if path.startswith("/token"):
                    body = json.dumps({"token": proxy.bearer_token}).encode()
                    status = 200
                elif path == "/v2/" and not self.headers.get("Authorization"):
                    body, status = b"{}", 401
                else:
                    return False
                self.send_response(status)
                if status == 401:
                    realm = f"http://{proxy.address}/token"
                    self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="x"')
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                proxy.log.requests.append((self.command, path, status, len(body)))
                return True

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BlobStore:
    """Another origin serving blobs by digest (what a registry redirects to), recording the
    ``Authorization`` header of each request."""

    def __init__(self, blobs: dict[str, bytes], *, status: int | None = None) -> None:
        self.blobs = blobs
        self.status = status  # answer every request with this (401: an expired signature)
        self.authorizations: list[str | None] = []
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    def start(self) -> BlobStore:
        store = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                store.authorizations.append(self.headers.get("Authorization"))
                digest = self.path.split("?")[0].rsplit("/", 1)[1]
                data = store.blobs.get(digest)
                if data is None or store.status is not None:
                    self.send_response(store.status or 404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        # "localhost", not 127.0.0.1: another origin than the registry's.
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://localhost:{self._server.server_address[1]}/storage"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> BlobStore:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- token auth


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenServer:
    """The token service of the distribution spec's Bearer flow, for a :class:`Registry`
    started with ``token=``: ``GET /token?service=...&scope=...`` with Basic auth answers a
    JWT (RS256, signed with ``openssl``, the signing certificate in its ``x5c`` header, which
    the registry trusts through ``rootcertbundle``) granting the asked actions to a known
    user, and 401 with a distribution-style error to anyone else. Records each request's
    scopes and user."""

    service = "modelctl-test-registry"
    issuer = "modelctl-test-issuer"

    def __init__(self, folder: Path, users: dict[str, str]) -> None:
        self.folder = folder
        self.users = users
        self.requests: list[tuple[str | None, list[str]]] = []
        self._server: ThreadingHTTPServer | None = None
        self.realm = ""
        folder.mkdir(parents=True, exist_ok=True)
        self.key = folder / "token.key"
        self.cert = folder / "token.crt"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
             "-out", str(self.cert), "-days", "2", "-subj", "/CN=modelctl test token signer"],
            check=True, capture_output=True,
        )  # fmt: skip
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True, capture_output=True,
        ).stdout  # fmt: skip
        self._x5c = base64.b64encode(der).decode("ascii")

    def token(self, user: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": user, "aud": self.service, "exp": now + 300,
            "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access,
        }  # fmt: skip
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(), check=True, capture_output=True,
        ).stdout  # fmt: skip
        return signing_input + "." + _b64url(signature)

    def start(self) -> TokenServer:
        tokens = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                scopes = query.get("scope", [])
                user = None
                auth = self.headers.get("Authorization") or ""
                if auth.startswith("Basic "):
                    raw = base64.b64decode(auth[6:]).decode()
                    name, _, password = raw.partition(":")
                    user = name if tokens.users.get(name) == password else f"!{name}"
                tokens.requests.append((user, scopes))
                if user is None or user.startswith("!"):
                    error = {"code": "UNAUTHORIZED", "message": "invalid username or password"}
                    body = json.dumps({"errors": [error]}).encode()
                    self.send_response(401)
                else:
                    body = json.dumps(
                        {"token": tokens.token(user, scopes), "expires_in": 300}
                    ).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.realm = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
