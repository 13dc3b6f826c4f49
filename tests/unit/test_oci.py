"""Pure parts of the OCI support: references, challenges, credential files, the artifact."""

from __future__ import annotations

import base64
import json
import os
import random
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelctl.errors import InputError
from modelctl.lock.digest import Digest
from modelctl.lock.types import FileRef
from modelctl.oci import modelpack
from modelctl.oci.auth import auth_files, find_credentials, parse_challenge
from modelctl.oci.reference import Reference, parse

component = st.from_regex(r"[a-z0-9]{1,6}(?:[._-][a-z0-9]{1,4}){0,2}", fullmatch=True)
names = st.lists(component, min_size=1, max_size=3).map("/".join)
hosts = st.sampled_from(["registry.example", "127.0.0.1", "localhost", "r-1.corp.example", "[::1]"])
ports = st.one_of(st.none(), st.integers(1, 65535))
tags = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", fullmatch=True))
digests = st.one_of(
    st.none(), st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex())
)


@given(hosts, ports, names, tags, digests)
def test_reference_round_trip(
    host: str, port: int | None, name: str, tag: str | None, digest: str | None
) -> None:
    registry = host if port is None else f"{host}:{port}"
    ref = Reference(registry, name, tag, digest)
    assert parse(str(ref)) == ref
    assert ref.host == host.strip("[]")
    assert ref.port == port
    assert ref.version == (digest or tag or "latest")


@pytest.mark.parametrize(
    ("text", "loopback"),
    [("oci://127.0.0.1:5000/a", True), ("oci://localhost/a", True), ("oci://[::1]:5000/a", True),
     ("oci://127.8.9.1/a", True), ("oci://registry.example/a", False), ("oci://10.0.0.1/a", False)],
)  # fmt: skip
def test_loopback(text: str, loopback: bool) -> None:
    assert parse(text).is_loopback is loopback


@pytest.mark.parametrize(
    "text",
    ["r.example/a", "oci://", "oci://r.example", "oci://r.example/", "oci://r.example/A",
     "oci://r.example/a//b", "oci://r.example/a:", "oci://r.example/a:-x",
     "oci://r.example/a@sha256:12", "oci://r.example:0/a", "oci://r.example:99999/a",
     "oci://r_x.example/a", "oci://r.example/a/" + "b" * 300],
)  # fmt: skip
def test_bad_references(text: str) -> None:
    with pytest.raises(InputError, match="not an OCI reference"):
        parse(text)


param_values = st.text(
    alphabet=st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=40
)


@given(st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), param_values, max_size=4))
def test_challenge_round_trip(params: dict[str, str]) -> None:
    quoted = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in params.items()
    )
    challenge = parse_challenge(f"Bearer {quoted}")
    assert challenge is not None
    assert challenge.scheme == "bearer"
    assert dict(challenge.params) == params


def test_challenge_of_distribution() -> None:
    c = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:team/models:pull,push"'
    )
    assert c is not None
    assert c.params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:team/models:pull,push",
    }
    basic = parse_challenge('Basic realm="test"')
    assert basic is not None and basic.scheme == "basic"
    assert parse_challenge("") is None


def _auths(path: Path, auths: dict[str, object], **extra: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": auths, **extra}))
    return path


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_credentials_precedence_and_specific_keys(tmp_path: Path) -> None:
    home = tmp_path / "home"
    docker = _auths(home / ".docker" / "config.json", {
        "https://r.example:5000/v1/": {"auth": _b64("docker:pw1")},
        "other.example": {"username": "u", "password": "p"},
    })  # fmt: skip
    env: dict[str, str] = {}
    creds = find_credentials("r.example:5000", "team/models", env, home)
    assert creds is not None and (creds.username, creds.password) == ("docker", "pw1")
    assert str(docker) in creds.source
    assert "pw1" not in repr(creds)
    other = find_credentials("other.example", "x", env, home)
    assert other is not None and other.password == "p"
    # REGISTRY_AUTH_FILE comes first; a key naming the repository's namespace wins.
    env["REGISTRY_AUTH_FILE"] = str(_auths(tmp_path / "auth.json", {
        "r.example:5000": {"auth": _b64("podman:pw2")},
        "r.example:5000/team": {"auth": _b64("team:pw3")},
    }))  # fmt: skip
    team = find_credentials("r.example:5000", "team/models", env, home)
    assert team is not None and team.username == "team"
    rest = find_credentials("r.example:5000", "solo", env, home)
    assert rest is not None and rest.username == "podman"
    assert find_credentials("nowhere.example", "x", env, home) is None
    assert auth_files({"XDG_RUNTIME_DIR": "/run/u"}, home)[0] == Path("/run/u/containers/auth.json")


def test_broken_credentials_are_input_errors(tmp_path: Path) -> None:
    env = {"REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}
    (tmp_path / "auth.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        find_credentials("r.example", "x", env, tmp_path)
    _auths(tmp_path / "auth.json", {"r.example": {"auth": "%%%"}})
    with pytest.raises(InputError, match="not base64") as info:
        find_credentials("r.example", "x", env, tmp_path)
    assert "%%%" not in str(info.value)


def test_credential_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-modelctltest"
    helper.write_text(
        '#!/bin/sh\nread host\n[ "$host" = "r.example" ] || exit 1\n'
        'echo \'{"ServerURL":"r.example","Username":"helped","Secret":"s"}\'\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    home = tmp_path / "home"
    _auths(home / ".docker" / "config.json", {}, credHelpers={"r.example": "modelctltest"})
    creds = find_credentials("r.example", "x", {}, home)
    assert creds is not None and (creds.username, creds.password) == ("helped", "s")
    assert find_credentials("q.example", "x", {}, home) is None


# --------------------------------------------------------------------------- the artifact


def _ref(asset: str, path: str, digest: Digest, role: str = "file") -> FileRef:
    return FileRef(asset, "model", "org/r", "c" * 40, path, 3, digest, role)


def _files() -> list[modelpack.PushedFile]:
    sha = Digest("sha256", "a" * 64)
    git = Digest("gitsha1", "b" * 40)
    return [
        modelpack.PushedFile(_ref("llm", "model.gguf", sha, "model"), str(sha), 3),
        modelpack.PushedFile(
            _ref("llm", "tokenizer.json", git, "tokenizer"), "sha256:" + "c" * 64, 5
        ),
        modelpack.PushedFile(_ref("tts", "README.md", git), "sha256:" + "c" * 64, 5),
    ]


@given(st.randoms(use_true_random=False))
def test_build_is_deterministic_whatever_the_order(rnd: random.Random) -> None:
    files = _files()
    first = modelpack.build(b"lock", files, ["llm", "tts"])
    rnd.shuffle(files)
    assert modelpack.build(b"lock", files, ["llm", "tts"]) == first


def test_build_then_parse() -> None:
    built = modelpack.build(b"lock", _files(), ["llm", "tts"])
    doc = json.loads(built.manifest)
    assert doc["layers"][0]["annotations"]["org.opencontainers.image.title"] == "modelctl.lock"
    types = [layer["mediaType"] for layer in doc["layers"][1:]]
    assert types == [modelpack.WEIGHT_RAW, modelpack.WEIGHT_CONFIG_RAW, modelpack.DOC_RAW]
    assert json.loads(built.config)["modelfs"]["diffIds"] == [
        layer["digest"] for layer in doc["layers"]
    ]
    artifact = modelpack.parse(built.manifest, modelpack.OCI_MANIFEST, "here")
    assert artifact.lock_layer.digest == modelpack.sha256_digest(b"lock")
    tok = _files()[1].ref
    layer = artifact.layer_for(tok)
    assert (
        layer is not None and layer.annotations["org.cncf.model.filepath"] == "llm/tokenizer.json"
    )
    assert artifact.layer_for(_ref("x", "y", Digest("sha256", "f" * 64))) is None


@pytest.mark.parametrize(
    ("path", "expected"),
    [("model.safetensors", modelpack.WEIGHT_RAW),
     ("m-00001-of-00002.safetensors", modelpack.WEIGHT_RAW),
     ("onnx/model_q8.onnx", modelpack.WEIGHT_RAW), ("config.json", modelpack.WEIGHT_CONFIG_RAW),
     ("vocabulary.txt", modelpack.WEIGHT_CONFIG_RAW), ("README.md", modelpack.DOC_RAW),
     ("LICENSE", modelpack.DOC_RAW)],
)  # fmt: skip
def test_media_types(path: str, expected: str) -> None:
    assert modelpack.media_type(_ref("a", path, Digest("sha256", "a" * 64))) == expected


@pytest.mark.parametrize(
    "doc",
    [[], {"mediaType": "application/vnd.oci.image.index.v1+json", "schemaVersion": 2},
     {"mediaType": modelpack.OCI_MANIFEST, "schemaVersion": 2, "config": {}, "layers": []},
     {"mediaType": modelpack.OCI_MANIFEST, "schemaVersion": 2,
      "artifactType": modelpack.ARTIFACT_TYPE, "layers": [{"digest": "sha256:x", "size": 1}]}],
)  # fmt: skip
def test_parse_refuses(doc: object) -> None:
    with pytest.raises(modelpack.ArtifactError):
        modelpack.parse(json.dumps(doc).encode(), "", "here")
