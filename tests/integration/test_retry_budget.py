"""Issue 24 item 1: retries are budgeted by the time waited without progress, not by a
count of answers. The local Hub answers 429 with the Hub's ``RateLimit`` header (no
``Retry-After``); ``MODELCTL_RETRY_WAIT_MAX`` caps each wait so the tests stay fast."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelctl.cli import main
from modelctl.errors import EXIT_NETWORK
from modelctl.testing.hub import LocalHub
from tests.support.helpers import seeded_bytes, write_repo


def _project(tmp_path: Path, local_hub: LocalHub) -> tuple[Path, bytes]:
    data = seeded_bytes(3, 50_000)
    write_repo(local_hub.root, "org/t", {"model.bin": data})
    m = tmp_path / "modelctl.yaml"
    m.write_text("assets:\n  a:\n    repo: org/t\n    files: [model.bin]\n")
    assert main(["lock", "-m", str(m)]) == 0
    local_hub.clear_requests()  # lock downloaded the (regular) file once to hash it
    return m, data


def test_a_sync_outlasts_twenty_rate_limited_answers_and_says_why_it_waits(
    tmp_path: Path, hf_env: Path, local_hub: LocalHub, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    m, data = _project(tmp_path, local_hub)
    capsys.readouterr()
    monkeypatch.setenv("MODELCTL_RETRY_WAIT_MAX", "0.05")
    local_hub.faults.set(status_codes=[429] * 20, retry_after=None, rate_limit_reset=1)
    assert main(["sync", "-m", str(m)]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    snapshots = hf_env / "models--org--t" / "snapshots"
    assert next(snapshots.glob("*/model.bin")).read_bytes() == data
    gets = [r for r in local_hub.requests if r.method == "GET" and "/resolve/" in r.path]
    assert [r.status for r in gets] == [429] * 20 + [200]
    # Every wait is on the progress display: how long, and why.
    assert err.count('(rate limited: RateLimit "resolvers" resets in 1 s)') == 20, err
    assert "s before retrying a/model.bin" in err


def test_a_server_that_never_lets_up_ends_the_sync_after_the_budget(
    tmp_path: Path, hf_env: Path, local_hub: LocalHub, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    m, _data = _project(tmp_path, local_hub)
    capsys.readouterr()
    monkeypatch.setenv("MODELCTL_RETRY_WAIT_MAX", "0.05")
    monkeypatch.setenv("MODELCTL_RETRY_BUDGET", "1")
    local_hub.faults.rate_limit_for(600)
    assert main(["sync", "-m", str(m)]) == EXIT_NETWORK
    err = capsys.readouterr().err
    assert "s of waiting without progress (the retry budget is 1 s, MODELCTL_RETRY_BUDGET)" in err
    assert "rate-limits this client" in err  # the hint: wait for its window, log in
    gets = [r for r in local_hub.requests if r.method == "GET" and "/resolve/" in r.path]
    assert len(gets) > 5  # not a fixed count of answers: the budget ran out
    assert not list(hf_env.glob("models--org--t/snapshots/*/model.bin"))
    assert not list(hf_env.glob("models--org--t/blobs/*[!e]"))  # only *.incomplete, if any
