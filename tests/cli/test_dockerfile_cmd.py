"""`modelctl dockerfile`: one COPY line per locked asset, in the lock's order."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelctl.cli import main
from modelctl.lock.manifest import load_manifest
from tests.support.helpers import lock_text

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "docker"


def two_asset_lock(tmp_path: Path, disabled: str = "") -> Path:
    """A lock with assets `a` and `b` (b sorted after a), `disabled` turned off."""
    one = lock_text()
    head, asset = one.split("assets:\n")
    second = asset.replace("  a:\n", "  b:\n", 1)
    if disabled:
        target = asset if disabled == "a" else second
        changed = target.replace("enabled: true", "enabled: false")
        asset, second = (changed, second) if disabled == "a" else (asset, changed)
    path = tmp_path / "modelctl.lock"
    path.write_text(f"{head}assets:\n{asset}{second}")
    return path


def test_prints_one_copy_per_asset_in_lock_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = two_asset_lock(tmp_path)
    assert main(["dockerfile", "--lockfile", str(lock)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "COPY --from=builder /models/a /models/a",
        "COPY --from=builder /models/b /models/b",
    ]
    args = ["--from", "fetch", "--source", "/tree/", "--dest", "/srv/models"]
    assert main(["dockerfile", "--lockfile", str(lock), *args]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "COPY --from=fetch /tree/a /srv/models/a",
        "COPY --from=fetch /tree/b /srv/models/b",
    ]


def test_disabled_assets_get_no_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = two_asset_lock(tmp_path, disabled="a")
    assert main(["dockerfile", "--lockfile", str(lock)]) == 0
    assert capsys.readouterr().out.splitlines() == ["COPY --from=builder /models/b /models/b"]


def test_missing_lock_is_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dockerfile", "--lockfile", str(tmp_path / "nope.lock")]) == 2
    assert "nope.lock" in capsys.readouterr().err


def test_the_example_dockerfile_copies_each_asset_of_its_manifest() -> None:
    """The example's COPY lines follow its manifest (the container tests check them
    against `modelctl dockerfile` on a real lock of it)."""
    manifest = load_manifest(EXAMPLE / "modelctl.yaml")
    names = sorted(a.name for a in manifest.assets if a.enabled)
    lines = [line.strip() for line in (EXAMPLE / "Dockerfile").read_text().splitlines()]
    copies = [line for line in lines if line.startswith("COPY --from=builder /models/")]
    assert copies == [f"COPY --from=builder /models/{n} /models/{n}" for n in names]
