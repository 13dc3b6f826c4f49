"""Credentials from the Docker/Podman auth files, htpasswd basic auth and TLS with a test CA,
against a real docker-registry."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelctl.cli import main
from tests.oci.conftest import requires_registry
from tests.support.servers import registry as reg

pytestmark = requires_registry
USER, PASSWORD = "alice", "s3cret-Pa55"


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[reg.Registry]:
    with reg.Registry(tmp_path / "auth-registry", users={USER: PASSWORD}) as r:
        yield r


def auth_file(path: Path, registry: str, user: str, password: str) -> Path:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": {registry: {"auth": token}}}))
    return path


def test_basic_auth_from_docker_config_and_registry_auth_file(
    project: Path,
    auth_registry: reg.Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dest = f"oci://{auth_registry.address}/team/models:v1"
    # push with ~/.docker/config.json ($DOCKER_CONFIG) ...
    docker = tmp_path / "docker-config"
    auth_file(docker / "config.json", auth_registry.address, USER, PASSWORD)
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    assert main(["push", dest, "-m", str(project)]) == 0, capsys.readouterr().err
    # ... sync elsewhere with a containers auth.json named by REGISTRY_AUTH_FILE.
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty"))
    monkeypatch.setenv(
        "REGISTRY_AUTH_FILE",
        str(auth_file(tmp_path / "auth.json", auth_registry.address, USER, PASSWORD)),
    )
    target = tmp_path / "tree"
    args = ["sync", "--frozen", "-m", str(project), "--target", str(target), "--from", dest]
    assert main(args) == 0, capsys.readouterr().err
    assert (target / "beta" / "model.gguf").stat().st_size == 200_000


@pytest.mark.parametrize("command", ["push", "sync"])
def test_wrong_password_exit_3_with_the_registry_message_and_no_secret(
    command: str,
    project: Path,
    auth_registry: reg.Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong = "wr0ng-Secret-xyz"
    path = auth_file(tmp_path / "auth.json", auth_registry.address, USER, wrong)
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(path))
    capsys.readouterr()
    dest = f"oci://{auth_registry.address}/team/models:v1"
    args = ["push", dest, "-m", str(project)]
    if command == "sync":
        args = [
            "sync",
            "--frozen",
            "-m",
            str(project),
            "--from",
            dest,
            "--target",
            str(tmp_path / "t"),
        ]
    assert main(args) == 3
    out = capsys.readouterr()
    text = out.out + out.err
    assert "access denied" in text
    assert "UNAUTHORIZED: authentication required" in text  # the registry's own words
    assert str(path) in text  # where the credentials came from
    assert wrong not in text and base64.b64encode(f"{USER}:{wrong}".encode()).decode() not in text
    assert "Traceback" not in text


def test_no_credentials_exit_3_naming_how_to_log_in(
    project: Path, auth_registry: reg.Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = f"oci://{auth_registry.address}/team/models:v1"
    assert main(["push", dest, "-m", str(project)]) == 3
    err = capsys.readouterr().err
    assert "requires credentials" in err and "docker login" in err


def test_tls_with_a_test_ca(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = reg.make_ca(tmp_path / "ca")
    with reg.Registry(tmp_path / "tls-registry", tls=ca) as r:
        dest = f"oci://{r.address}/team/models:v1"
        # Not trusted without the CA, and never silently downgraded to plain HTTP.
        assert main(["push", dest, "-m", str(project)]) == 3
        err = capsys.readouterr().err
        assert "TLS certificate is not trusted" in err and "--ca-cert" in err
        assert main(["push", dest, "-m", str(project), "--ca-cert", str(ca.ca_cert)]) == 0
        capsys.readouterr()
        target = tmp_path / "tree"
        args = ["sync", "--frozen", "-m", str(project), "--target", str(target), "--from", dest]
        assert main([*args, "--ca-cert", str(ca.ca_cert)]) == 0, capsys.readouterr().err
        assert (target / "alpha" / "weights.safetensors").stat().st_size == 300_000
        # --insecure skips verification (test registries only).
        assert main(["push", dest, "-m", str(project), "--insecure"]) == 0


def test_bearer_token_flow(
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with (
        reg.TokenServer(tmp_path / "tokens", {USER: PASSWORD}) as tokens,
        reg.Registry(tmp_path / "token-registry", token=tokens) as r,
    ):
        path = auth_file(tmp_path / "auth.json", r.address, USER, PASSWORD)
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(path))
        dest = f"oci://{r.address}/team/models:v1"
        # The token service is on another origin (another port): the registry's password
        # goes there only once the user names the host (issue 24 item 5).
        assert main(["push", dest, "-m", str(project)]) == 3
        err = capsys.readouterr().err
        assert "token requests to another origin (http://127.0.0.1:" in err
        assert "--token-host 127.0.0.1" in err and PASSWORD not in err
        assert tokens.requests == []  # nothing was sent there
        monkeypatch.setenv("MODELCTL_REGISTRY_TOKEN_HOSTS", "127.0.0.1")
        assert main(["push", dest, "-m", str(project)]) == 0, capsys.readouterr().err
        assert (USER, ["repository:team/models:pull,push"]) in tokens.requests
        # A mount asks for pull on the source repository in the same token.
        again = ["push", f"oci://{r.address}/team/b:v1", "-m", str(project), "--mount-from",
                 "team/models"]  # fmt: skip
        assert main(again) == 0, capsys.readouterr().err
        assert "6 mounted" in capsys.readouterr().err
        assert (
            USER,
            ["repository:team/b:pull,push", "repository:team/models:pull"],
        ) in tokens.requests
        target = tmp_path / "tree"
        args = ["sync", "--frozen", "-m", str(project), "--target", str(target), "--from", dest]
        assert main(args) == 0, capsys.readouterr().err
        assert (USER, ["repository:team/models:pull"]) in tokens.requests
        assert (target / "beta" / "model.gguf").stat().st_size == 200_000
        # Wrong password: the token service's own message, exit 3, no secret shown.
        auth_file(path, r.address, USER, "not-the-password")
        assert main(["push", dest, "-m", str(project)]) == 3
        err = capsys.readouterr().err
        assert "invalid username or password" in err and "not-the-password" not in err


def test_credentials_never_go_to_a_plain_http_realm_of_a_tls_registry(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Item 5: even to a host the user named, the password goes over HTTPS only, unless
    the registry itself is plain HTTP (on loopback, or --insecure)."""
    ca = reg.make_ca(tmp_path / "ca")
    with (
        reg.TokenServer(tmp_path / "tokens", {USER: PASSWORD}) as tokens,
        reg.Registry(tmp_path / "tls-token-registry", tls=ca, token=tokens) as r,
    ):
        path = auth_file(tmp_path / "auth.json", r.address, USER, PASSWORD)
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(path))
        dest = f"oci://{r.address}/team/models:v1"
        args = ["push", dest, "-m", str(project), "--ca-cert", str(ca.ca_cert)]
        assert main(args) == 3
        assert "token requests to another origin" in capsys.readouterr().err
        assert main([*args, "--token-host", "127.0.0.1"]) == 3
        err = capsys.readouterr().err
        assert "the registry's token service is on plain HTTP, and the registry is not" in err
        assert tokens.requests == []


def _loopback_alias() -> str | None:
    """This machine's host name if it resolves to a loopback address (Debian's /etc/hosts
    does): a name that is not loopback by itself, so plain HTTP must be refused for it."""
    name = socket.gethostname()
    try:
        addr = socket.gethostbyname(name)
    except OSError:
        return None
    return name if addr.startswith("127.") and name != "localhost" else None


@pytest.mark.skipif(_loopback_alias() is None, reason="the host name does not resolve to loopback")
def test_plain_http_only_on_loopback_or_insecure(
    project: Path, registry: reg.Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = f"oci://{_loopback_alias()}:{registry.port}/team/models:v1"
    assert main(["push", dest, "-m", str(project)]) == 3
    err = capsys.readouterr().err
    assert "does not speak TLS" in err and "--insecure" in err
    assert main(["push", dest, "-m", str(project), "--insecure"]) == 0
