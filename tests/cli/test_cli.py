"""The command line as a user meets it: help, exit codes, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modelctl.cli import main


def cli_subprocess(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelctl", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_help_lists_commands_and_exit_codes() -> None:
    r = cli_subprocess("--help")
    assert r.returncode == 0
    for word in ("lock", "plan", "Exit codes", "bad input"):
        assert word in r.stdout


def test_version() -> None:
    r = cli_subprocess("--version")
    assert r.returncode == 0 and "modelctl" in r.stdout


def test_unknown_option_is_a_usage_error() -> None:
    r = cli_subprocess("lock", "--nope")
    assert r.returncode == 2 and "No such option" in r.stderr


def test_no_manifest_found(tmp_path: Path) -> None:
    r = cli_subprocess("lock", cwd=tmp_path)
    assert r.returncode == 2
    assert "no modelctl.yaml found" in r.stderr and "Traceback" not in r.stderr


def test_manifest_is_found_upwards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "modelctl.yaml").write_text("assets:\n  cloud:\n    kind: api\n")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert main(["lock"]) == 0
    assert (tmp_path / "modelctl.lock").exists()
    assert main(["lock", "--check"]) == 0
    capsys.readouterr()


def test_schema_violation_in_subprocess_has_no_traceback(tmp_path: Path) -> None:
    m = tmp_path / "modelctl.yaml"
    m.write_text("assets:\n  tts:\n    kind: kokoro\n    variant: q99\n")
    r = cli_subprocess("lock", "-m", str(m))
    assert r.returncode == 2
    assert f"{m}:4:14" in r.stderr and "q99" in r.stderr and "expected one of" in r.stderr
    assert "Traceback" not in r.stderr
