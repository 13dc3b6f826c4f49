"""Hostile input: random manifests and lockfiles, unsafe paths, leaked tokens.

Every input gives exit 0 or a clear error with its documented exit code, never a
traceback; nothing unsafe is written.
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelctl.cli import main
from modelctl.errors import EXIT_INPUT, LockfileError, ManifestError, UnsafePathError
from modelctl.hub.answers import RemoteFile, RepoSnapshot
from modelctl.hub.resolve import resolve
from modelctl.lock import lockfile
from modelctl.lock.digest import Digest
from modelctl.lock.manifest import parse_manifest
from modelctl.lock.types import RepoType
from tests.support.fault_report import REPORT
from tests.support.helpers import lock_text

pytestmark = pytest.mark.faults

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(
        [
            "gguf",
            "kokoro",
            "stt",
            "api",
            "files",
            "org/name",
            "../x",
            "/etc/passwd",
            "a\\b",
            "*.bin",
            "main",
            "é/ü",
            "\x00",
        ]
    ),
)
keys = st.one_of(
    st.sampled_from(
        [
            "assets",
            "version",
            "endpoint",
            "repo",
            "files",
            "file",
            "kind",
            "voices",
            "variant",
            "revision",
            "tokenizer",
            "enabled",
            "repo_type",
            "sources",
        ]
    ),
    st.text(string.ascii_letters + "_-. ü", min_size=1, max_size=12),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=25,
)
manifest_like = st.builds(
    lambda assets: {"assets": assets},
    st.dictionaries(
        st.text(string.ascii_lowercase, min_size=1, max_size=6),
        st.dictionaries(keys, documents, max_size=5),
        max_size=3,
    ),
)


def _yaml(doc: object) -> str:
    return yaml.safe_dump(doc, allow_unicode=True)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.one_of(st.text(max_size=300), documents.map(_yaml), manifest_like.map(_yaml)))
def test_random_manifests_parse_or_fail_clearly(text: str) -> None:
    REPORT.add("bad_inputs")
    try:
        parse_manifest(text, "m.yaml")
    except ManifestError as exc:
        assert exc.exit_code == EXIT_INPUT
        assert exc.render().startswith("manifest error: ")


VALID_LOCK = lock_text()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data())
def test_mutated_lockfiles_parse_or_fail_clearly(data: st.DataObject) -> None:
    REPORT.add("bad_inputs")
    text = VALID_LOCK
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 20)))
        text = text[:i] + data.draw(st.text(max_size=10)) + text[j:]
    try:
        lock = lockfile.parse(text, "modelctl.lock")
    except LockfileError as exc:
        assert exc.exit_code == EXIT_INPUT
        return
    for ref in lock.files():  # whatever parsed is safe to use as a path
        assert not ref.path.startswith("/") and ".." not in ref.path.split("/")


@settings(
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    deadline=None,
)
@given(st.one_of(st.text(max_size=200), documents.map(_yaml), manifest_like.map(_yaml)))
def test_cli_never_shows_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    REPORT.add("bad_inputs")
    m = tmp_path / "modelctl.yaml"
    m.write_text(text, encoding="utf-8")
    (tmp_path / "modelctl.lock").unlink(missing_ok=True)
    code = main(["lock", "--check", "-m", str(m)])
    out, err = capsys.readouterr()
    assert code in (1, 2), err  # 1: valid but no lockfile yet; 2: bad manifest
    assert "Traceback" not in err and "Traceback" not in out


def test_alias_bomb_and_deep_nesting_are_refused() -> None:
    REPORT.add("bad_inputs", 3)
    bomb = (
        "a: &a [x,x,x,x,x,x,x,x,x]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join(["*" + chr(97 + i)] * 9) + "]\n"
            for i in range(8)
        )
        + "assets: {}\n"
    )
    with pytest.raises(ManifestError, match="too large"):
        parse_manifest(bomb)
    with pytest.raises(ManifestError, match="nesting"):
        parse_manifest("[" * 50_000)
    with pytest.raises(LockfileError):
        lockfile.parse("{" * 50_000)


def test_huge_values_are_refused() -> None:
    REPORT.add("bad_inputs", 2)
    with pytest.raises(LockfileError, match="size"):
        lockfile.parse(VALID_LOCK.replace("size: 3", "size: " + "9" * 40))
    with pytest.raises(ManifestError):
        parse_manifest("assets:\n  a:\n    repo: " + "o/" + "a" * 5000 + "\n    files: [x]\n")


UNSAFE = [
    "../escape",
    "a/../../b",
    "/etc/passwd",
    "C:/win",
    "a\\b",
    "a\x00b",
    "./a",
    "a//b",
    "",
    "a/\n",
]


@pytest.mark.parametrize("path", UNSAFE)
def test_unsafe_paths_in_the_manifest(path: str) -> None:
    REPORT.add("bad_inputs")
    with pytest.raises(ManifestError):
        parse_manifest(yaml.safe_dump({"assets": {"a": {"repo": "o/a", "files": [path]}}}))


@pytest.mark.parametrize("path", UNSAFE)
def test_unsafe_paths_in_the_lockfile(path: str) -> None:
    REPORT.add("bad_inputs")
    text = VALID_LOCK.replace("path: x.bin", "path: " + yaml.safe_dump(path).splitlines()[0])
    with pytest.raises(LockfileError):
        lockfile.parse(text)


class HostileHub:
    """A Hub whose listing holds an unsafe path (the real server can't serve one)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def snapshot(self, repo_id: str, repo_type: RepoType, revision: str) -> RepoSnapshot:
        files = (
            RemoteFile(self.path, 1, Digest("sha256", "0" * 64)),
            RemoteFile("ok.bin", 1, Digest("sha256", "1" * 64)),
        )
        return RepoSnapshot(repo_id, repo_type, "c" * 40, files)

    def file_metadata(
        self, repo_id: str, repo_type: RepoType, commit: str, path: str
    ) -> RemoteFile:
        raise AssertionError("not needed")


@pytest.mark.parametrize("path", ["../evil.bin", "/abs.bin", "a\\evil.bin", "sub/../../evil.bin"])
def test_unsafe_paths_in_a_hub_listing_are_refused(path: str) -> None:
    REPORT.add("bad_inputs")
    manifest = parse_manifest("assets:\n  a:\n    repo: o/a\n    files: ['*.bin']\n")
    with pytest.raises(UnsafePathError):
        resolve(manifest, HostileHub(path))


SECRET = "hf_SeCrEtToKeN1234567890abcdef"


def test_token_never_appears_in_output_errors_or_lockfile(
    tmp_path: Path,
    hub_root: Path,
    hf_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modelctl.testing.hub import LocalHub
    from tests.support.helpers import write_repo

    REPORT.add("bad_inputs", 4)

    write_repo(hub_root, "org/private", {"w.bin": b"x" * 100})
    m = tmp_path / "modelctl.yaml"
    m.write_text("assets:\n  p:\n    repo: org/private\n    files: [w.bin]\n")
    with LocalHub(hub_root, token=SECRET) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        # no token: refused with a hint, exit 3
        assert main(["lock", "-m", str(m)]) == 3
        out, err = capsys.readouterr()
        assert "HF_TOKEN" in err
        # a wrong token: refused; neither token is echoed
        monkeypatch.setenv("HF_TOKEN", "hf_wrong" + SECRET[::-1])
        assert main(["lock", "-m", str(m)]) == 3
        out, err = capsys.readouterr()
        assert SECRET[::-1] not in out + err
        # the right token: works; the token is nowhere in output or the lockfile
        monkeypatch.setenv("HF_TOKEN", SECRET)
        assert main(["lock", "-m", str(m)]) == 0
        assert main(["plan", "--json", "-m", str(m)]) == 0
        assert main(["sync", "-m", str(m)]) == 0
        assert main(["sync", "-m", str(m), "--offline"]) == 0
        out, err = capsys.readouterr()
        assert SECRET not in out + err
        assert SECRET not in m.with_suffix(".lock").read_text()
        monkeypatch.setenv("HF_TOKEN", SECRET)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        m.with_suffix(".lock").unlink()
        assert main(["lock", "-m", str(m)]) == 3  # network error message: no token either
        out, err = capsys.readouterr()
        assert SECRET not in out + err
    from modelctl.settings import from_env

    assert SECRET not in repr(from_env({"HF_TOKEN": SECRET}))
