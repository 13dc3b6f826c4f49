"""A command imports only what it runs: a warm `sync --frozen` (online or offline) and the runtime
never load an HTTP client, huggingface_hub or jsonschema, nor PyYAML for a lock as `modelctl
lock` writes it, nor another command's module, nor click (measured in benchmarks/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.helpers import cli_env, make_project, seeded_bytes

MANIFEST = """\
assets:
  a:
    repo: org/imp
    files: [w.safetensors, config.json]
"""
NETWORK = {"huggingface_hub", "httpx2", "httpx", "http.client", "urllib.request", "ssl"}
HEAVY = {
    "jsonschema",
    "yaml",
    "modelctl.lock.yamldoc",
    "modelctl.cli.deploy_cmds",
    "modelctl.cli.report_cmds",
    "modelctl.cli.edit_cmds",
    "modelctl.cli.oci_cmds",
    "modelctl.cli.sign_cmd",
    "modelctl.hub.client",
    "modelctl.transfer.fetch",
    "modelctl.transfer.http",
    "modelctl.bundle.archive",
}

SYNC = """
import json, sys
from modelctl.cli import main
code = main(sys.argv[1:])
print(json.dumps([code, sorted(sys.modules)]))
"""
RUNTIME = """
import json, sys
from modelctl.runtime import open_lock
models = open_lock(sys.argv[1])
paths = [p for a in models.assets() for p in models.files(a).values()]
print(json.dumps([len(paths), sorted(sys.modules)]))
"""


def run(script: str, env: dict[str, str], *args: str) -> tuple[int, set[str]]:
    out = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, check=True
    )
    code, mods = json.loads(out.stdout.strip().splitlines()[-1])
    return code, set(mods)


def test_warm_offline_sync_and_the_runtime_load_no_network_code(
    tmp_path: Path, hub_root: Path, hf_env: Path
) -> None:
    repos = {"org/imp": {"w.safetensors": seeded_bytes(41, 100_000), "config.json": b"{}"}}
    project = make_project(tmp_path / "p", hub_root, repos, MANIFEST)
    env = cli_env(hf_env)
    lock = str(project.lock_path)
    env = {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}
    code, mods = run(SYNC, env, "sync", "--frozen", "-q", "--lockfile", lock)
    assert code == 0
    # The cold sync downloads with http.client; with no *_proxy variable set it does not
    # import urllib.request for getproxies() (~10 ms, issue 19).
    assert "http.client" in mods
    assert "urllib.request" not in mods or not sys.platform.startswith("linux")
    # Online too: the Hub source is built only when a file is missing.
    code, mods = run(SYNC, env, "sync", "--frozen", "-q", "--lockfile", lock)
    assert code == 0
    assert mods & (NETWORK | HEAVY | {"click"}) == set()
    code, mods = run(SYNC, env, "sync", "--frozen", "--offline", "-q", "--lockfile", lock)
    assert code == 0
    assert mods & (NETWORK | HEAVY | {"click"}) == set()
    n, mods = run(RUNTIME, env, lock)
    assert n == 2
    assert mods & (NETWORK | HEAVY | {"click"}) == set()


def test_the_push_default_is_the_push_module_s() -> None:
    from modelctl.cli import oci_cmds
    from modelctl.oci import push

    assert oci_cmds.PUSH_JOBS == push.DEFAULT_PUSH_JOBS
