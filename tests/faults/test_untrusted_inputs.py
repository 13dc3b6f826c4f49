"""Inputs that used to end in a traceback: a deeply nested bundle index.json
(RecursionError), and a gitsha1 file locked without a size and served without a
Content-Length (ValueError: gitsha1 needs the file size)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from modelctl.bundle.archive import INDEX_MEMBER, LOCK_MEMBER, BundleError, BundleIndex
from modelctl.lock import lockfile
from modelctl.lock.types import Lock
from modelctl.store.layout import TargetStore
from modelctl.transfer.http import Response, StdlibTransport, Transport
from modelctl.values import replace
from tests.support.fault_report import REPORT
from tests.support.helpers import audit, cli_in_process, lib_sync, make_project, seeded_bytes

pytestmark = pytest.mark.faults


def _tar(members: Mapping[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_bundle_index_is_a_bundle_error(
    tmp_path: Path, hf_env: Path, hub_root: Path, capsys: pytest.CaptureFixture[str], depth: int
) -> None:
    REPORT.add("bad_inputs")
    nested = b"[" * depth + b"]" * depth
    with pytest.raises(BundleError, match="not a valid bundle index"):
        BundleIndex.parse(nested, INDEX_MEMBER)
    project = make_project(
        tmp_path / "p",
        hub_root,
        {"org/b": {"a.txt": b"a"}},
        'assets:\n  b:\n    repo: org/b\n    files: ["*"]\n',
    )
    bundle = tmp_path / "b.tar"
    bundle.write_bytes(
        _tar({LOCK_MEMBER: project.lock_path.read_bytes(), INDEX_MEMBER: b'{"x": ' + nested + b"}"})
    )
    code, out, err = cli_in_process(
        capsys, "sync", "-m", str(project.manifest), "--from-bundle", str(bundle)
    )
    assert code == 2, err
    assert "not a valid bundle index" in err and "Traceback" not in err + out


class _NoContentLength:
    """The real local Hub's answers, as a server that sends no Content-Length shows them
    (chunked or read to the end of the connection)."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner

    def get(self, url: str, headers: Mapping[str, str]) -> Response:
        resp = self._inner.get(url, headers)
        original = resp.header

        def header(name: str) -> str | None:
            if name.lower() in ("content-length", "content-range"):
                return None
            return original(name)

        resp.header = header  # type: ignore[method-assign]
        return resp


def _sizeless(lock: Lock) -> Lock:
    """``lock`` with every size unknown, as a mirror that reports none makes it."""
    return replace(
        lock,
        assets=tuple(
            replace(
                a,
                sources=tuple(
                    replace(s, files=tuple(replace(f, size=None) for f in s.files))
                    for s in a.sources
                ),
            )
            for a in lock.assets
        ),
    )


def test_gitsha1_without_any_size_is_hashed_after_the_download(
    tmp_path: Path, hf_env: Path, hub_root: Path
) -> None:
    REPORT.add("faults")
    repos = {"org/n": {"config.json": b'{"n": 1}', "notes.txt": seeded_bytes(71, 100_000)}}
    project = make_project(
        tmp_path / "p", hub_root, repos, 'assets:\n  n:\n    repo: org/n\n    files: ["*"]\n'
    )
    lock = _sizeless(project.lock())
    assert {r.digest.algorithm for r in lock.files()} == {"gitsha1"}
    lockfile.write(project.lock_path, lock)
    store = TargetStore(tmp_path / "out")
    result = lib_sync(project, store, transport=_NoContentLength(StdlibTransport()))
    assert len(result.downloaded) == len(list(lock.files()))  # .gitattributes too
    audit(lock, store, context="gitsha1, no size")
    for path in repos["org/n"]:
        assert store.final_path(project.ref(path)).read_bytes() == project.data(project.ref(path))
