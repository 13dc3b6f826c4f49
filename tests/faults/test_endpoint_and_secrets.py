"""modelctl contacts no host but the configured endpoint, and shows no credential.

- huggingface_hub 2.4's header builder GETs ``<HF_ENDPOINT>/api/agent-harnesses``: with the
  endpoint set only by the manifest's ``endpoint:``, lock and sync reached HF_ENDPOINT's
  host. A second local server stands for that host here and must see no request.
- A server echoing ``Authorization`` into a redirect ``Location`` got the token printed in
  the "unsupported URL" error.
- A password in the endpoint URL was printed in network hints.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelctl.errors import NetworkError, redact
from modelctl.testing.hub import LocalHub
from tests.support.fault_report import REPORT
from tests.support.helpers import cli_env, seeded_bytes, write_repo

pytestmark = pytest.mark.faults

TOKEN = "hf_SeCrEtToKeN0123456789abcdef"
REPO = {"w.safetensors": seeded_bytes(91, 200_000), "config.json": b'{"e": 1}'}


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelctl", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("omit_metadata", [False, True])
def test_lock_and_sync_contact_only_the_manifest_endpoint(
    tmp_path: Path, hf_env: Path, hub_root: Path, local_hub: LocalHub, omit_metadata: bool
) -> None:
    """``omit_metadata``: the listing has no sizes or digests, so lock asks each file's
    with a HEAD (the fallback that went through huggingface_hub's header builder)."""
    write_repo(hub_root, "org/e", REPO)
    local_hub.faults.set(omit_metadata=omit_metadata)
    manifest = tmp_path / "modelctl.yaml"
    manifest.write_text(
        f'endpoint: "{local_hub.url}"\nassets:\n  e:\n    repo: org/e\n    files: ["*"]\n'
    )
    (tmp_path / "elsewhere").mkdir()
    with LocalHub(tmp_path / "elsewhere") as elsewhere:
        env = cli_env(hf_env.parent)
        env["HF_ENDPOINT"] = elsewhere.url
        env["HF_TOKEN"] = TOKEN
        # huggingface_hub asks for the agent registry only with telemetry on (the default).
        env.pop("HF_HUB_DISABLE_TELEMETRY", None)
        for args in (("lock",), ("sync", "-q"), ("verify",)):
            proc = _run(env, *args, "-m", str(manifest))
            assert proc.returncode == 0, proc.stderr
        assert elsewhere.requests == [], [r.path for r in elsewhere.requests]
    got = [r for r in local_hub.requests if r.method in ("GET", "HEAD")]
    assert got and all("/agent-harnesses" not in r.path for r in got)
    REPORT.add("bad_inputs")


@pytest.mark.parametrize("scheme", ["gopher://evil.example/steal?auth=", "http://"])
def test_a_token_echoed_into_a_redirect_is_never_printed(
    tmp_path: Path, hf_env: Path, hub_root: Path, local_hub: LocalHub, scheme: str
) -> None:
    write_repo(hub_root, "org/e", REPO)
    manifest = tmp_path / "modelctl.yaml"
    manifest.write_text("assets:\n  e:\n    repo: org/e\n    files: [config.json]\n")
    env = cli_env(hf_env.parent)
    env["HF_TOKEN"] = TOKEN
    assert _run(env, "lock", "-m", str(manifest)).returncode == 0
    # "http://" + "Bearer%20<token>": the token becomes the host name of the redirect.
    local_hub.faults.set(echo_auth_location=scheme)
    proc = _run(env, "sync", "-m", str(manifest))
    REPORT.add("faults")
    assert proc.returncode == 3, proc.stderr
    assert TOKEN not in proc.stderr + proc.stdout, proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_endpoint_password_is_redacted_in_every_message(tmp_path: Path, hf_env: Path) -> None:
    manifest = tmp_path / "modelctl.yaml"
    manifest.write_text('assets:\n  e:\n    repo: org/e\n    files: ["*"]\n')
    env = cli_env(hf_env.parent)
    # Nothing listens there: the lock fails with a network error naming the endpoint.
    env["HF_ENDPOINT"] = "http://alice:pa55word@127.0.0.1:9"
    proc = _run(env, "lock", "-m", str(manifest))
    REPORT.add("bad_inputs")
    assert proc.returncode == 3, proc.stderr
    assert "pa55word" not in proc.stderr + proc.stdout
    assert "127.0.0.1:9" in proc.stderr  # the endpoint is still named


def test_redact() -> None:
    text = "see https://u:p@h.example/x and http://tok@h2/ and ftp://h3/a@b; t=hf_abcd1234"
    shown = redact(text, ("hf_abcd1234", None, ""))
    assert shown == "see https://***@h.example/x and http://***@h2/ and ftp://h3/a@b; t=***"
    err = NetworkError("failed", where="https://user:secret@mirror/x", hint="https://a:b@m")
    assert "secret" not in err.render() and ":b@" not in str(err)
    assert os.environ.get("HF_TOKEN") is None
