"""Every URL a server sends goes through one checked entry point (issue 24 item 4):
``modelctl.transfer.urls.parse_url``. The layout is checked (no other module parses
URLs), the entry point is a property (any text: a Url or BadUrl, never another error),
and every call site that follows a ``Location`` is walked with hostile ones against a
real server: each ends in a transport error its caller already handles."""

from __future__ import annotations

import ast
import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelctl.errors import HubResponseError, NetworkError
from modelctl.oci.reference import parse
from modelctl.oci.registry import Registry, RegistryOptions
from modelctl.transfer.http import TRANSPORT_ERRORS, StdlibTransport
from modelctl.transfer.urls import MAX_URL_CHARS, BadUrl, parse_url

PKG = Path(__file__).resolve().parents[2] / "modelctl"
PARSERS = {"urlsplit", "urlparse", "urljoin"}
# The one place besides transfer/urls.py: a proxy URL from the environment (the user's
# own setting, not a server's), parsed by http.Proxy.parse.
ALLOWED = {("transfer/http.py", "Proxy.parse")}

HOSTILE = [
    "http://127.0.0.1:99999/x",
    "http://127.0.0.1:0/x",
    "http://127.0.0.1:-1/x",
    "http://127.0.0.1:port/x",
    "http://[::1/x",
    "http://[127.0.0.1]/x",
    "ftp://127.0.0.1/x",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "//127.0.0.1:99999/x",
    "http://u:p@127.0.0.1/x",
    "http://127.0.0.1/\u00fc",
    "http://127.0.0.1/a b",
    "http://127.0.0.1/\x00",
    "http://127.0.0.1/" + "a" * MAX_URL_CHARS,
]


def _call_sites() -> set[tuple[str, str]]:
    """(file, enclosing function) of every urllib.parse URL parser call in modelctl/."""
    found = set()
    for path in sorted(PKG.rglob("*.py")):
        rel = str(path.relative_to(PKG))
        if rel.startswith("testing/") or rel == "transfer/urls.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                child.parent = node  # type: ignore[attr-defined]
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else getattr(fn, "attr", "")
                if name in PARSERS:
                    found.add((rel, _enclosing(node)))
    return found


def _enclosing(node: ast.AST) -> str:
    names = []
    while (node := getattr(node, "parent", None)) is not None:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
    return ".".join(reversed(names))


def test_no_module_parses_urls_but_the_checked_entry_point() -> None:
    assert _call_sites() <= ALLOWED, "parse server URLs with modelctl.transfer.urls.parse_url"


@given(st.text(max_size=200), st.sampled_from([None, "http://h.example:8080/a/b?q=1"]))
def test_parse_url_gives_a_url_or_bad_url_never_another_error(text: str, base: str | None) -> None:
    try:
        url = parse_url(text, base)
    except BadUrl:
        return
    assert url.scheme in ("http", "https") and url.host and 0 < url.port < 65536
    assert all(0x21 <= ord(c) <= 0x7E for c in url.text)


@pytest.mark.parametrize("location", HOSTILE)
def test_a_hostile_location_is_refused(location: str) -> None:
    with pytest.raises(BadUrl):
        parse_url(location, "http://127.0.0.1:8080/start")


# --------------------------------------------------------------- walking the call sites


class _Redirector:
    """Answers every request with ``302 Location: <self.location>``."""

    def __init__(self) -> None:
        self.location = ""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def _answer(self) -> None:
                self.send_response(302)
                self.send_header("Location", owner.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def redirector() -> Iterator[_Redirector]:
    r = _Redirector()
    yield r
    r.close()


# Header values a server can send at all (http.server refuses CR/LF and NUL itself).
SENDABLE = [h for h in HOSTILE if "\x00" not in h and h.isascii() and " " not in h]


@pytest.mark.parametrize("location", SENDABLE)
def test_transport_get_follows_no_hostile_location(location: str, redirector: _Redirector) -> None:
    redirector.location = location
    with pytest.raises(TRANSPORT_ERRORS) as info:
        StdlibTransport().get(f"{redirector.url}/file", {})
    assert isinstance(info.value, http.client.InvalidURL)


@pytest.mark.parametrize("location", SENDABLE)
def test_transport_request_follows_no_hostile_location(
    location: str, redirector: _Redirector
) -> None:
    redirector.location = location
    with pytest.raises(BadUrl):
        StdlibTransport().request("GET", f"{redirector.url}/m", {}, limit=1024, follow=True)


@pytest.mark.parametrize("location", SENDABLE)
def test_the_registry_turns_a_hostile_location_into_a_network_error(
    location: str, redirector: _Redirector
) -> None:
    redirector.location = location
    host = redirector.url.removeprefix("http://")
    registry = Registry(parse(f"oci://{host}/team/m:v1"), None, RegistryOptions())
    registry.scheme = "http"
    with pytest.raises(NetworkError, match="not a usable URL"):
        registry.send("GET", f"{redirector.url}/v2/team/m/blobs/x", {}, what="a blob", follow=True)
    with pytest.raises(NetworkError, match="not a usable URL"):
        registry.location(location, f"{redirector.url}/v2/team/m/blobs/uploads/", "an upload")


@pytest.mark.parametrize("location", SENDABLE)
def test_the_hub_client_turns_a_hostile_location_into_a_hub_error(
    location: str, redirector: _Redirector
) -> None:
    from modelctl.hub.client import HfHubClient

    redirector.location = location
    client = HfHubClient(redirector.url, None, False, 5.0)
    with pytest.raises(HubResponseError, match="not a usable URL"):
        client._head(f"{redirector.url}/org/t/resolve/abc/x.bin", "org/t:x.bin")
