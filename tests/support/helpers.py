"""Helpers shared by tests: import them as ``from tests.support.helpers import ...``.

- repos for the local Hub (:func:`write_repo`) and their content (:func:`seeded_bytes`);
  lockfile text to edit into bad ones (:func:`lock_text`);
- a locked project (:func:`make_project`) and a library sync of it (:func:`lib_sync`);
- the "two repos locked and synced" fixtures ``repos`` and ``project`` of the bundle and
  OCI tests (import :func:`two_repos` and :func:`two_repos_synced` to use them);
- the local Hub's request log (:func:`settle`, :func:`content_gets`, ...);
- the audit every fault test ends with (:func:`audit`: each final file against the lock,
  counted in the fault suite's REPORT);
- the command line, in this process (:func:`cli_in_process`) or as ``python -m modelctl
  sync`` in its own (:func:`spawn_sync`, with :func:`cli_env`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from modelctl.cli import main
from modelctl.hub.source import HubSource
from modelctl.lock import lockfile
from modelctl.lock.digest import digest_bytes, new_hasher
from modelctl.lock.types import FileRef, Lock
from modelctl.settings import from_env
from modelctl.store.layout import Store
from modelctl.store.record import FileStamp, read_record
from modelctl.sync import SyncResult, sync
from modelctl.testing.hub import LocalHub, RequestRecord
from modelctl.transfer.http import Transport
from modelctl.transfer.retry import RetryPolicy
from tests.support.fault_report import REPORT

# ------------------------------------------------------------------------------ repos


def write_repo(
    root: Path,
    repo_id: str,
    files: dict[str, bytes],
    branch: str = "main",
    lfs_patterns: tuple[str, ...] = (),
) -> Path:
    """Lay out one repo for the local Hub: ``root/<org>/<name>/<branch>/<path>``."""
    base = root / repo_id / branch
    for rel, data in files.items():
        p = base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    if lfs_patterns:
        lines = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in lfs_patterns)
        (base / ".gitattributes").write_text(lines)
    return base


def seeded_bytes(seed: int, size: int) -> bytes:
    """Deterministic pseudo-random content: the same seed and size give the same bytes
    (and a shorter size a prefix of them)."""
    return hashlib.shake_256(seed.to_bytes(4, "big")).digest(size)


LOCK_TEMPLATE = """\
version: 1
manifest: sha256:{z}
assets:
  a:
    kind: files
    enabled: true
    spec: sha256:{z}
    sources:
    - repo: o/a
      repo_type: model
      revision: main
      commit: {c}
      files:
      - path: {path}
        size: 3
        digest: {digest}
        role: file
"""


def lock_text(path: str = "x.bin", digest: str = "gitsha1:" + "1" * 40) -> str:
    """A valid one-file lockfile, to edit into invalid ones."""
    return LOCK_TEMPLATE.format(z="0" * 64, c="a" * 40, path=path, digest=digest)


# ------------------------------------------------------------------------------ a locked project


MiB = 1024 * 1024
# Retries without the production pauses, so a test of five failures takes milliseconds.
FAST = RetryPolicy(backoff_s=0.01, backoff_max_s=0.05, retry_after_max_s=0.2)
# Names of every temporary file modelctl may create; none must outlive a successful sync.
TEMP_SUFFIXES = (".incomplete", ".modelctl-partial", ".tmp", ".modelctl-link")


@dataclass(frozen=True)
class Project:
    manifest: Path
    contents: Mapping[tuple[str, str], bytes]  # (repo_id, path) -> the Hub's bytes

    @property
    def lock_path(self) -> Path:
        return self.manifest.with_suffix(".lock")

    def lock(self) -> Lock:
        return lockfile.load(self.lock_path)

    def refs(self) -> list[FileRef]:
        return list(dict.fromkeys(self.lock().files()))

    def ref(self, path: str) -> FileRef:
        return next(r for r in self.refs() if r.path == path)

    def data(self, ref: FileRef) -> bytes:
        return self.contents[(ref.repo_id, ref.path)]


def make_project(
    folder: Path,
    hub_root: Path,
    repos: Mapping[str, Mapping[str, bytes]],
    manifest_text: str,
    lfs_patterns: tuple[str, ...] = ("*.gguf", "*.safetensors", "*.bin"),
) -> Project:
    """Lay out the repos, write the manifest and lock it (needs the hf_env fixture)."""
    for repo_id, files in repos.items():
        write_repo(hub_root, repo_id, dict(files), lfs_patterns=lfs_patterns)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "modelctl.yaml"
    manifest.write_text(manifest_text)
    assert main(["lock", "-m", str(manifest)]) == 0
    contents = {(r, p): d for r, files in repos.items() for p, d in files.items()}
    return Project(manifest, contents)


def lib_sync(
    project: Project,
    store: Store,
    *,
    policy: RetryPolicy = FAST,
    jobs: int | None = None,
    transport: Transport | None = None,
    **kwargs: object,
) -> SyncResult:
    source = HubSource(from_env(os.environ), jobs=jobs, transport=transport, policy=policy)
    return sync(project.lock(), store, source, jobs=jobs, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ two repos, locked and synced

TWO_REPOS_MANIFEST = """\
assets:
  alpha:
    repo: org/alpha
    files: [weights.safetensors, config.json, "notes/*.txt"]
  beta:
    repo: org/beta
    files: [model.gguf, shared.json]
  gamma:
    repo: org/alpha
    files: [config.json]
"""
TWO_REPOS_CONFIG = b'{"hidden": 64}'
# 6 locked files (alpha 3, beta 2, gamma 1); 4 distinct contents: the weights, the config
# (= beta's shared.json, in another repo, = gamma's config.json), a.txt, model.gguf.
TWO_REPOS_LOCKED_FILES = 6
TWO_REPOS_CONTENTS = 4


@pytest.fixture(name="repos")
def two_repos(hub_root: Path) -> dict[str, dict[str, bytes]]:
    """Fixture ``repos``: org/alpha and org/beta on the local Hub ({repo: {path: bytes}}).

    Used by the bundle and OCI tests: ``from tests.support.helpers import two_repos``.
    """
    content = {
        "org/alpha": {
            "weights.safetensors": seeded_bytes(1, 300_000),
            "config.json": TWO_REPOS_CONFIG,
            "notes/a.txt": b"a",
            "README.md": b"not locked",
        },
        "org/beta": {"model.gguf": seeded_bytes(2, 200_000), "shared.json": TWO_REPOS_CONFIG},
    }
    for repo_id, files in content.items():
        write_repo(hub_root, repo_id, files, lfs_patterns=("*.safetensors", "*.gguf"))
    return content


@pytest.fixture(name="project")
def two_repos_synced(tmp_path: Path, hf_env: Path, repos: dict[str, dict[str, bytes]]) -> Path:
    """Fixture ``project``: TWO_REPOS_MANIFEST in tmp_path/proj, locked and synced into the
    hf_env cache; returns the manifest path."""
    manifest = tmp_path / "proj" / "modelctl.yaml"
    manifest.parent.mkdir()
    manifest.write_text(TWO_REPOS_MANIFEST)
    assert main(["sync", "-q", "-m", str(manifest)]) == 0
    return manifest


# ------------------------------------------------------------------------------ server log


def settle(hub: LocalHub, quiet: float = 0.05) -> list[RequestRecord]:
    """The request log once it has not changed for ``quiet`` seconds. The server logs a
    request when its answer starts, with the length it announces, and corrects bytes_sent
    when the handler ends: a throttled handler ends one chunk after the client left."""
    seen: list[RequestRecord] | None = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = hub.requests
        if now == seen:
            return now
        seen = now
        time.sleep(quiet)
    raise AssertionError("the server's request log kept changing for 10 s")


def clear(hub: LocalHub) -> None:
    settle(hub)
    hub.clear_requests()


def content_gets(hub: LocalHub, ref: FileRef, quiet: float = 0.05) -> list[RequestRecord]:
    """Every GET of a file's content (/resolve/, or the /blobs/ CDN stand-in), in order."""
    resolve = f"/resolve/{ref.commit}/{ref.path}"
    blob_path = f"/blobs/{ref.digest.hex}"
    return [
        r
        for r in settle(hub, quiet)
        if r.method == "GET" and (r.path.endswith(resolve) or r.path == blob_path)
    ]


def resolve_gets(hub: LocalHub, ref: FileRef, quiet: float = 0.05) -> list[RequestRecord]:
    return [r for r in content_gets(hub, ref, quiet) if "/resolve/" in r.path]


def blob_gets(hub: LocalHub, ref: FileRef) -> list[RequestRecord]:
    return [r for r in content_gets(hub, ref) if r.path.startswith("/blobs/")]


def range_start(rec: RequestRecord) -> int:
    if rec.range is None:
        return 0
    return int(rec.range.removeprefix("bytes=").split("-")[0])


def was_short(rec: RequestRecord, size: int) -> bool:
    """A body answer that ended before the bytes it announced: a dropped connection."""
    return rec.status in (200, 206) and rec.bytes_sent < size - range_start(rec)


# ------------------------------------------------------------------------------ audit


@dataclass
class Audit:
    checked: int = 0  # locked files found at their final path and hashed
    wrong_on_disk: list[str] = field(default_factory=list)  # final files whose bytes differ
    wrongly_accepted: list[str] = field(default_factory=list)  # ... that modelctl trusts


def accepted_by_modelctl(store: Store, ref: FileRef, path: Path, data: bytes) -> bool:
    """Would sync / verify / the runtime loader trust this file? Read-only (a full disk
    must not make the audit fail): a record vouching for this exact file version, or its
    blake3; without a usable record, modelctl hashes it against the lock."""
    if ref.size is not None and len(data) != ref.size:
        return False  # the size is checked first, before any record
    stamp = FileStamp.of(path.stat())
    record = read_record(store.record_path(ref))
    if record is not None and record.digest == ref.digest:
        if record.stamp == stamp:
            return True
        if record.blake3 is not None:
            h = new_hasher("blake3")
            h.update(data)
            return h.hexdigest() == record.blake3.hex
    return digest_bytes(ref.digest.algorithm, data) == ref.digest


def audit(lock: Lock, store: Store, *, strict: bool = True, context: str = "") -> Audit:
    """Check every locked file at its final path against the lock; count it in REPORT.

    ``strict``: no wrong bytes at any final path at all (after network faults, kills, a
    full disk). Without it (a hand-edited lock), wrong bytes may sit there, but modelctl
    must not trust them. ``wrongly_accepted`` must be 0 either way.
    """
    result = Audit()
    for ref in dict.fromkeys(lock.files()):
        path = store.final_path(ref)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            continue  # a symlink loop planted by a test: nothing can read it, nor accept it
        result.checked += 1
        if digest_bytes(ref.digest.algorithm, data) == ref.digest and (
            ref.size is None or len(data) == ref.size
        ):
            continue
        result.wrong_on_disk.append(f"{ref.asset}:{ref.path}")
        if accepted_by_modelctl(store, ref, path, data):
            result.wrongly_accepted.append(f"{ref.asset}:{ref.path}")
    REPORT.add("checked", result.checked)
    REPORT.add("wrongly_accepted", len(result.wrongly_accepted))
    assert not result.wrongly_accepted, f"{context}: wrongly accepted {result.wrongly_accepted}"
    if strict:
        assert not result.wrong_on_disk, f"{context}: wrong bytes at {result.wrong_on_disk}"
    return result


def stray_temp_files(root: Path) -> list[Path]:
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.name.endswith(TEMP_SUFFIXES))


def partials_are_prefixes(project: Project, store: Store, refs: Iterable[FileRef]) -> int:
    """Every partial download holds a prefix of the real bytes; returns how many exist."""
    found = 0
    for ref in refs:
        partial = store.partial_path(ref)
        try:
            have = partial.read_bytes()
        except FileNotFoundError:
            continue
        found += 1
        assert project.data(ref).startswith(have), f"{partial} is not a prefix of the file"
    return found


# ------------------------------------------------------------------------------ CLI


def cli_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``modelctl ARGS`` run in this process: (exit code, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def cli_env(hf_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HF_HOME"] = str(hf_home)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


def spawn_sync(
    project: Project, env: Mapping[str, str], *extra: str, as_json: bool = False
) -> subprocess.Popen[bytes]:
    """``python -m modelctl sync --frozen`` in its own process: quiet, or its NDJSON
    progress on stdout (``as_json``); stderr kept for failure messages."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelctl",
            "sync",
            "--frozen",
            "--json" if as_json else "-q",
            "--lockfile",
            str(project.lock_path),
            *extra,
        ],
        env=dict(env),
        stdout=subprocess.PIPE if as_json else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
