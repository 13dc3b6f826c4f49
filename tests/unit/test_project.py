"""One lockfile search for CLI, runtime and provision(); the lock mode as one value."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelctl.errors import InputError
from modelctl.project import LockMode, find_lock, find_project
from modelctl.runtime import open_lock
from tests.support.helpers import lock_text


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """tmp/app/modelctl.{yaml,lock}, tmp/app/sub/deeper, tmp/other/x.{yaml,lock}."""
    app = tmp_path / "app"
    (app / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    for folder, stem in ((app, "modelctl"), (tmp_path / "other", "x")):
        (folder / f"{stem}.yaml").write_text("assets: {}\n")
        (folder / f"{stem}.lock").write_text(lock_text())
    return tmp_path


def test_the_lock_search_order(tree: Path) -> None:
    app, other = tree / "app", tree / "other"
    cwd = app / "sub" / "deeper"
    env_lock = {"MODELCTL_LOCK": str(other / "x.lock")}
    env_manifest = {"MODELCTL_MANIFEST": str(other / "x.yaml")}
    explicit = tree / "given.lock"
    # --lockfile, then --manifest's lock, then $MODELCTL_LOCK, then $MODELCTL_MANIFEST's.
    assert find_lock(explicit, app / "modelctl.yaml", env_lock, cwd) == explicit
    assert find_lock(None, other / "x.yaml", env_lock, cwd) == other / "x.lock"
    assert find_lock(None, None, {**env_manifest, **env_lock}, cwd) == other / "x.lock"
    assert find_lock(None, None, env_manifest, cwd) == other / "x.lock"
    # Else modelctl.lock here or above.
    assert find_lock(None, None, {}, cwd) == app / "modelctl.lock"
    with pytest.raises(InputError, match=r"no modelctl\.lock found"):
        find_lock(None, None, {}, tree)


def test_a_project_uses_the_same_search_for_its_lock(tree: Path) -> None:
    app, other = tree / "app", tree / "other"
    cwd = app / "sub"
    found = find_project(None, None, {}, cwd)
    assert (found.manifest_path, found.lock_path) == (app / "modelctl.yaml", app / "modelctl.lock")
    # $MODELCTL_LOCK names the lock of the manifest found above, as for `verify` or the runtime.
    found = find_project(None, None, {"MODELCTL_LOCK": str(other / "x.lock")}, cwd)
    assert (found.manifest_path, found.lock_path) == (app / "modelctl.yaml", other / "x.lock")
    found = find_project(None, None, {"MODELCTL_MANIFEST": str(other / "x.yaml")}, cwd)
    assert (found.manifest_path, found.lock_path) == (other / "x.yaml", other / "x.lock")
    # An explicit --manifest brings its own lock, whatever the environment says.
    env = {"MODELCTL_LOCK": str(app / "modelctl.lock")}
    found = find_project(other / "x.yaml", None, env, cwd)
    assert found.lock_path == other / "x.lock"


def test_the_runtime_honours_modelctl_manifest(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tree / "other"
    models = open_lock(env={"MODELCTL_MANIFEST": str(other / "x.yaml")}, target=tree)
    assert models.lock_path == other / "x.lock"
    monkeypatch.chdir(tree / "app" / "sub")
    assert open_lock(env={}, target=tree).lock_path == tree / "app" / "modelctl.lock"


def test_lock_mode_of_the_uv_flags() -> None:
    assert LockMode.of(locked=False, frozen=False) is LockMode.UPDATE
    assert LockMode.of(locked=True, frozen=False) is LockMode.LOCKED
    assert LockMode.of(locked=False, frozen=True) is LockMode.FROZEN
    assert [m.value for m in LockMode] == ["update", "locked", "frozen"]
