"""push --asset: one lock, a subset per service image, through a real registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelctl.cli import main
from modelctl.lock import lockfile
from tests.oci.conftest import requires_registry
from tests.support.servers import registry as reg

pytestmark = requires_registry


def test_push_asset_then_sync_the_same_subset(
    project: Path,
    registry: reg.Registry,
    repos: dict[str, dict[str, bytes]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    capsys.readouterr()
    dest = f"oci://{registry.address}/team/beta:v1"
    assert main(["push", dest, "-m", str(project), "--asset", "beta"]) == 0
    pushed = capsys.readouterr().out.strip()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "other-home"))  # another machine
    lock_path = lockfile.lock_path_for(project)
    target = tmp_path / "beta-image"
    code = main(["sync", "--frozen", "--lockfile", str(lock_path), "--target", str(target),
                 "--from", f"oci://{pushed}", "--asset", "beta", "-q"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in target.iterdir() if p.name != ".modelctl") == ["beta"]
    assert (target / "beta" / "model.gguf").read_bytes() == repos["org/beta"]["model.gguf"]
    # The whole lock is another lock than the artifact's: refused, nothing installed.
    code = main(["sync", "--frozen", "--lockfile", str(lock_path), "--target",
                 str(tmp_path / "all"), "--from", f"oci://{pushed}"])  # fmt: skip
    assert code == 2
    assert "another lock" in capsys.readouterr().err


def test_push_unknown_asset_exits_2(
    project: Path, registry: reg.Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    dest = f"oci://{registry.address}/team/x:v1"
    assert main(["push", dest, "-m", str(project), "--asset", "nope"]) == 2
    assert "one of: alpha, beta, gamma" in capsys.readouterr().err
