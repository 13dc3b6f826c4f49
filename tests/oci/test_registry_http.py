"""The registry client is on modelctl's one HTTP stack and retry policy (issue 23): the
Hub client's User-Agent, and a 429's ``RateLimit`` / ``Retry-After`` waited out as said
(no docker-registry needed: a small server that answers what the test wants)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modelctl._version import __version__
from modelctl.oci.manifests import get_manifest
from modelctl.oci.reference import parse
from modelctl.oci.registry import Registry, RegistryOptions
from modelctl.transfer.retry import RetryPolicy


class _Server:
    """``/v2/`` answers 200; a manifest answers the queued statuses first, then 200."""

    def __init__(self) -> None:
        self.statuses: list[tuple[int, dict[str, str]]] = []
        self.seen: list[tuple[str, str | None, float]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                owner.seen.append((self.path, self.headers.get("User-Agent"), time.monotonic()))
                status, headers, body = 200, {}, b"{}"
                if "/manifests/" in self.path and owner.statuses:
                    status, headers = owner.statuses.pop(0)
                    body = json.dumps({"errors": [{"code": "TOOMANYREQUESTS"}]}).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.server.shutdown()
    s.server.server_close()


def test_the_registry_sends_modelctl_s_user_agent_and_waits_as_the_server_says(
    server: _Server,
) -> None:
    server.statuses = [
        (429, {"RateLimit": '"api";r=0;t=0'}),  # t + 1 s, as for the Hub
        (503, {"Retry-After": "1"}),
    ]
    ref = parse(f"oci://{server.address}/team/m:v1")
    registry = Registry(ref, None, RegistryOptions(policy=RetryPolicy(backoff_s=0.01)))
    data, _media, _digest = get_manifest(registry, ref)
    assert data == b"{}"
    agents = {agent for _path, agent, _at in server.seen}
    assert agents == {f"modelctl/{__version__}"}
    times = [at for path, _agent, at in server.seen if "/manifests/" in path]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.95 and times[2] - times[1] >= 0.95  # as told, not 0.01 s
