"""A hand-edited lockfile: a changed digest or size makes sync refuse the downloaded bytes
(exit 4) and verify report the file (exit 1); a changed commit gets a 404 (exit 2) or other
content (exit 4) from the Hub; a changed manifest or spec hash makes `sync --locked` exit 1.
Nothing that differs from the lock is ever accepted."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from modelctl.errors import EXIT_CHECK_FAILED, EXIT_INPUT, EXIT_INTEGRITY
from modelctl.store.layout import HfCacheStore, Store, TargetStore
from modelctl.testing.hub import LocalHub
from tests.support.fault_report import REPORT
from tests.support.helpers import (
    MiB,
    Project,
    audit,
    clear,
    cli_in_process,
    make_project,
    seeded_bytes,
    settle,
    stray_temp_files,
    write_repo,
)

pytestmark = pytest.mark.faults

SEED = 0x5EED_0004
MANIFEST = """\
assets:
  net:
    repo: org/t
    files: [model.safetensors, config.json]
  gg:
    kind: gguf
    repo: org/g
    file: m.gguf
    tokenizer: null
"""
REPOS = {
    "org/t": {"model.safetensors": seeded_bytes(51, MiB), "config.json": b'{"hidden": 64}'},
    "org/g": {"m.gguf": seeded_bytes(52, MiB // 2)},
}


@pytest.fixture
def project(tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub) -> Project:
    p = make_project(tmp_path / "proj", hub_root, REPOS, MANIFEST)
    clear(local_hub)
    return p


def edit_lock(project: Project, path: str, field: str, change: str) -> str:
    """Replace ``field``'s value in the lock entry of ``path`` (or its source's commit)."""
    text = project.lock_path.read_text()
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.strip() == f"- path: {path}")
    if field == "commit":
        at = max(i for i in range(at) if lines[i].strip().startswith("commit:"))
    else:
        at = next(i for i in range(at, len(lines)) if lines[i].strip().startswith(f"{field}:"))
    key, _, old = lines[at].partition(": ")
    lines[at] = f"{key}: {change}\n"
    project.lock_path.write_text("".join(lines))
    return old.strip()


def flip_hex(text: str, rng: random.Random) -> str:
    """``algo:hex`` (or bare hex) with one hex digit changed."""
    prefix, _, hexpart = text.rpartition(":")
    i = rng.randrange(len(hexpart))
    new = rng.choice([c for c in "0123456789abcdef" if c != hexpart[i]])
    return (f"{prefix}:" if prefix else "") + hexpart[:i] + new + hexpart[i + 1 :]


def sync_args(store: Store, project: Project, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    args = ["--lockfile", str(project.lock_path)]
    if isinstance(store, TargetStore):
        return [*args, "--target", str(store.root)]
    monkeypatch.setenv("HF_HUB_CACHE", str(store.root))
    return args


def fresh_store(tmp_path: Path, i: int) -> Store:
    if i % 2:
        return TargetStore(tmp_path / f"t{i}")
    return HfCacheStore(tmp_path / f"c{i}")


# ------------------------------------------------------------------------------ sync


def test_random_edits_of_digest_size_or_commit_never_sync_wrong_bytes(
    project: Project,
    local_hub: LocalHub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Into an empty store: each edit fails with its documented code, naming the file."""
    rng = random.Random(SEED)
    pristine = project.lock_path.read_text()
    for i in range(12):
        path = rng.choice(["model.safetensors", "config.json", "m.gguf"])
        field = ["digest", "size", "commit"][i % 3]
        ref = project.ref(path)
        if field == "digest":
            change, want = flip_hex(str(ref.digest), rng), EXIT_INTEGRITY
        elif field == "size":
            change, want = str((ref.size or 0) + rng.choice([-3, -1, 1, 4096])), EXIT_INTEGRITY
        else:
            change, want = flip_hex(ref.commit, rng), EXIT_INPUT
        project.lock_path.write_text(pristine)
        edit_lock(project, path, field, change)
        store = fresh_store(tmp_path, i)
        ctx = f"seed={SEED} round={i} {path} {field} -> {change}"
        code, _, err = cli_in_process(
            capsys, "sync", "--frozen", *sync_args(store, project, monkeypatch)
        )
        REPORT.add("bad_inputs")
        assert code == want, f"{ctx}\n{err}"
        assert path in err and "Traceback" not in err, ctx
        if field == "digest":
            assert f"expected: {change}" in err and f"actual:   {ref.digest}" in err, err
        if field == "size":
            assert f"expected: {change} bytes" in err, err
        if field == "commit":
            assert "RevisionNotFound" in err and change in err, err
        tampered = project.lock()
        # A commit is per source: every file of that repo is refused, not only this one.
        edited = [
            r for r in tampered.files()
            if r.path == path or (field == "commit" and r.repo_id == ref.repo_id)
        ]  # fmt: skip
        assert not any(store.final_path(r).exists() for r in edited), ctx
        # The other files are complete and exact; the edited ones are nowhere.
        assert audit(tampered, store, context=ctx).checked == len(project.refs()) - len(edited)
        assert stray_temp_files(store.root) == [] or field == "commit", ctx


def test_a_commit_moved_to_other_content_is_refused(
    project: Project,
    hub_root: Path,
    local_hub: LocalHub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The commit of another branch exists and serves other bytes under the same name
    (and the same bytes for the other file, which is then rightly accepted)."""
    dev_files = {**REPOS["org/t"], "config.json": b'{"hidden": 65}'}
    write_repo(hub_root, "org/t", dev_files, branch="dev", lfs_patterns=("*.safetensors",))
    dev = local_hub.commit_of("org/t", "dev")
    edit_lock(project, "config.json", "commit", dev)
    store = TargetStore(tmp_path / "t")
    code, _, err = cli_in_process(
        capsys, "sync", "--frozen", *sync_args(store, project, monkeypatch)
    )
    REPORT.add("bad_inputs")
    assert code == EXIT_INTEGRITY, err
    assert f"org/t@{dev}:config.json" in err
    assert not (tmp_path / "t" / "net" / "config.json").exists()
    assert audit(project.lock(), store).checked == 2


# ------------------------------------------------------------------------------ verify


@pytest.mark.parametrize("field", ["digest", "size"])
@pytest.mark.parametrize("layout", ["cache", "target"])
def test_an_edit_after_sync_is_reported_by_verify_and_refused_by_sync(
    project: Project,
    local_hub: LocalHub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    field: str,
    layout: str,
) -> None:
    store = fresh_store(tmp_path, int(layout == "target"))
    args = sync_args(store, project, monkeypatch)
    assert cli_in_process(capsys, "sync", "--frozen", *args)[0] == 0
    ref = project.ref("model.safetensors")
    good = store.final_path(ref).read_bytes()
    rng = random.Random(SEED + 1)
    change = flip_hex(str(ref.digest), rng) if field == "digest" else str((ref.size or 0) + 1)
    edit_lock(project, ref.path, field, change)
    REPORT.add("bad_inputs")
    for full in ([], ["--full"]):
        code, _, err = cli_in_process(capsys, "verify", *full, *args)
        assert code == EXIT_CHECK_FAILED, err
        assert "1 of 3 locked file(s) differ from the lock" in err
        assert f"net: org/t@{ref.commit}:model.safetensors" in err
    clear(local_hub)
    code, _, err = cli_in_process(capsys, "sync", "--frozen", *args)
    assert code == EXIT_INTEGRITY, err
    # The bytes on disk are the Hub's (they match the old lock, not this one): sync
    # leaves them alone, and nothing vouches for them under the edited lock.
    assert store.final_path(ref).read_bytes() == good
    assert audit(project.lock(), store, strict=False).wrong_on_disk == ["net:model.safetensors"]


# ------------------------------------------------------------------------------ stale


@pytest.mark.parametrize("line", ["manifest", "spec"])
def test_a_manifest_or_spec_hash_that_no_longer_matches_fails_sync_locked(
    project: Project,
    local_hub: LocalHub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    line: str,
) -> None:
    rng = random.Random(SEED + 2)
    text = project.lock_path.read_text()
    m = re.search(rf"^(\s*{line}: )(sha256:[0-9a-f]{{64}})$", text, re.M)
    assert m is not None
    edited = text[: m.start(2)] + flip_hex(m.group(2), rng) + text[m.end(2) :]
    project.lock_path.write_text(edited)
    target = ["--target", str(tmp_path / "t")]
    code, _, err = cli_in_process(capsys, "sync", "--locked", "-m", str(project.manifest), *target)
    REPORT.add("bad_inputs")
    assert code == EXIT_CHECK_FAILED, err
    assert "stale lock" in err
    assert settle(local_hub) == []  # decided before any request
    assert project.lock_path.read_text() == edited  # --locked never rewrites the lock
    assert not (tmp_path / "t").exists()
    # Without --locked, the lock is re-created from the manifest and the sync succeeds.
    code, _, err = cli_in_process(capsys, "sync", "-m", str(project.manifest), *target)
    assert code == 0, err
    assert project.lock_path.read_text() == text
    assert audit(project.lock(), TargetStore(tmp_path / "t")).checked == 3


@pytest.mark.parametrize("layout", ["cache", "target"])
def test_the_runtime_loader_refuses_a_file_whose_lock_entry_was_edited(
    project: Project,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    layout: str,
) -> None:
    from modelctl.runtime import open_lock
    from modelctl.runtime.loader import NotSyncedError

    store = fresh_store(tmp_path, int(layout == "target"))
    args = sync_args(store, project, monkeypatch)
    assert cli_in_process(capsys, "sync", "--frozen", *args)[0] == 0
    edit_lock(project, "model.safetensors", "digest", "sha256:" + "0" * 64)
    target = store.root if isinstance(store, TargetStore) else None
    models = open_lock(project.lock_path, target=target, cache_dir=store.root)
    with pytest.raises(NotSyncedError):
        models.path("net", "model.safetensors")
