"""An HTTP proxy on loopback for tests: ``CONNECT`` tunnels and absolute-URI forwarding.

What stands between many companies and the Hub. ``HTTPS_PROXY=http://127.0.0.1:PORT``
makes clients open a ``CONNECT host:port`` tunnel (TLS runs inside it, end to end);
``HTTP_PROXY`` makes them send ``GET http://host/path`` to the proxy, which forwards it.
Only loopback targets are reached (a test must never send traffic elsewhere). With
``auth=("user", "pass")`` a request without the matching ``Proxy-Authorization`` gets 407.
Every request is recorded (``proxy.requests``: method and target).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hmac
import ipaddress
import logging
import socket
import socketserver
import threading
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

_BUF = 1024 * 1024
_MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class ProxyRequest:
    method: str  # CONNECT, GET, ...
    target: str  # host:port for CONNECT, the absolute URI otherwise
    status: int  # what the proxy answered (200 for a tunnel it opened)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    """Copy until src ends, then end dst's sending side."""
    buf = memoryview(bytearray(_BUF))
    try:
        while n := src.recv_into(buf):
            dst.sendall(buf[:n])
    except OSError:
        pass  # the other side went away: the tunnel ends
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        client: socket.socket = self.request
        head = self._read_head(client)
        if head is None:
            return
        head_bytes, rest = head
        lines = head_bytes.decode("latin-1").split("\r\n")
        method, target, _version = [*lines[0].split(" "), "", ""][:3]
        headers = [line for line in lines[1:] if line]
        if not self._authorized(headers):
            self._answer(client, method, target, 407, 'Proxy-Authenticate: Basic realm="test"')
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            self._tunnel(client, method, target, host, int(port or 443), rest)
            return
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            self._answer(client, method, target, 400)
            return
        origin_form = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        kept = [
            h
            for h in headers
            if h.split(":", 1)[0].strip().lower()
            not in ("proxy-authorization", "proxy-connection", "connection", "keep-alive")
        ]
        request = f"{method} {origin_form} HTTP/1.1\r\n" + "".join(f"{h}\r\n" for h in kept)
        request += "Connection: close\r\n\r\n"
        self._tunnel(
            client, method, target, parts.hostname, parts.port or 80,
            request.encode("latin-1") + rest, reply=False,
        )  # fmt: skip

    def _read_head(self, client: socket.socket) -> tuple[bytes, bytes] | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = client.recv(65536)
            if not chunk or len(data) > _MAX_HEAD:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        return head, rest

    def _authorized(self, headers: list[str]) -> bool:
        auth = self.server.proxy.auth
        if auth is None:
            return True
        want = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        for h in headers:
            name, _, value = h.partition(":")
            if name.strip().lower() == "proxy-authorization":
                return hmac.compare_digest(value.strip().encode(), want.encode())
        return False

    def _answer(
        self, client: socket.socket, method: str, target: str, status: int, extra: str = ""
    ) -> None:
        self.server.proxy._record(ProxyRequest(method, target, status))
        lines = [f"HTTP/1.1 {status} proxy", "Content-Length: 0", "Connection: close"]
        if extra:
            lines.append(extra)
        with contextlib.suppress(OSError):
            client.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def _tunnel(
        self,
        client: socket.socket,
        method: str,
        target: str,
        host: str,
        port: int,
        first: bytes,
        reply: bool = True,
    ) -> None:
        if not _loopback(host):
            self._answer(client, method, target, 403)  # tests reach loopback only
            return
        try:
            upstream = socket.create_connection((host.strip("[]"), port), timeout=10)
        except OSError:
            self._answer(client, method, target, 502)
            return
        upstream.settimeout(None)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.proxy._record(ProxyRequest(method, target, 200))
        with upstream:
            if reply:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if first:
                upstream.sendall(first)
            back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            back.start()
            _pipe(client, upstream)
            back.join()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], proxy: ConnectProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        logger.debug("test proxy: error on a connection from %s", client_address)


class ConnectProxy:
    """``with ConnectProxy() as proxy:`` serves at ``proxy.url`` (``http://127.0.0.1:PORT``)."""

    def __init__(self, host: str = "127.0.0.1", auth: tuple[str, str] | None = None) -> None:
        self.host = host
        self.auth = auth
        self.url = ""
        self._log: list[ProxyRequest] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _record(self, request: ProxyRequest) -> None:
        with self._lock:
            self._log.append(request)

    @property
    def requests(self) -> list[ProxyRequest]:
        with self._lock:
            return list(self._log)

    def start(self) -> ConnectProxy:
        server = _Server((self.host, 0), self)
        port = int(server.server_address[1])
        self.url = f"http://{self.host}:{port}"
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> ConnectProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; prints one line with the URL when ready."""
    import signal

    p = argparse.ArgumentParser(
        prog="python -m tests.support.servers.proxy", description="An HTTP proxy on loopback."
    )
    p.add_argument("--host", default="127.0.0.1")
    args = p.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with ConnectProxy(args.host) as proxy:
        print(f"modelctl-proxy listening on {proxy.url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
