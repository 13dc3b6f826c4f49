"""The commands examples/docker/Dockerfile runs, run here without Docker.

No Docker engine runs on these machines, so the image itself is never built. What can be
tested is: the builder stage's download command, exactly as the Dockerfile says it (read
from the file, so this test breaks when the file changes), in a subprocess with a fresh
HOME and only the local Hub reachable; its cache mount, by running it again with the same
cache folder; and the runtime stage's command with the Dockerfile's ENV, a fresh HOME, no
reachable Hub, on a copy of the tree made as COPY --from makes it (real files, new mtimes).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelctl.cli import main
from modelctl.manifest import load_manifest
from modelctl.testing.hub import LocalHub
from tests.helpers import write_repo

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "docker"
BIN = Path(sys.executable).parent
DEAD = "http://127.0.0.1:9"
CACHE_MOUNT = "/cache/models"
MODELS = "/models"

V1 = """\
assets:
  llm:
    kind: gguf
    repo: org/llm-GGUF
    file: tiny.gguf
    tokenizer:
      repo: org/llm
  extra:
    repo: org/llm
    files: [config.json, "notes/*.txt"]
"""
V2 = V1.replace('[config.json, "notes/*.txt"]', "[config.json]")

Instruction = tuple[str, str]


def instructions(text: str) -> list[Instruction]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuations joined."""
    found: list[Instruction] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # (comment lines may sit inside a continued instruction too)
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        keyword, _, args = (buf + line).partition(" ")
        found.append((keyword.upper(), args.strip()))
        buf = ""
    return found


def stages(text: str) -> dict[str, list[Instruction]]:
    result: dict[str, list[Instruction]] = {}
    current: list[Instruction] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            m = re.search(r"\s+AS\s+(\S+)$", args, re.IGNORECASE)
            assert m, f"every stage is named: FROM {args}"
            current = result.setdefault(m.group(1), [])
        current.append((keyword, args))
    return result


def split_run(args: str) -> tuple[list[str], str]:
    """RUN's own --flags (mounts), and the shell command after them."""
    flags = []
    while args.startswith("--"):
        flag, _, args = args.partition(" ")
        flags.append(flag)
        args = args.lstrip()
    return flags, args


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


@pytest.fixture(scope="module")
def dockerfile() -> dict[str, list[Instruction]]:
    return stages((EXAMPLE / "Dockerfile").read_text())


@pytest.fixture
def app(tmp_path: Path, hf_env: Path, hub_root: Path) -> Path:
    """The build context's app folder: the example's app.py, and a lock of test repos."""
    write_repo(
        hub_root,
        "org/llm-GGUF",
        {"tiny.gguf": hashlib.shake_256(b"g").digest(150_000)},
        lfs_patterns=("*.gguf",),
    )
    write_repo(
        hub_root,
        "org/llm",
        {"tokenizer.json": b"{}", "tokenizer_config.json": b"{}", "config.json": b"{}",
         "notes/a.txt": b"a"},
    )  # fmt: skip
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "modelctl.yaml").write_text(V1)
    assert main(["lock", "-m", str(folder / "modelctl.yaml")]) == 0
    shutil.copy(EXAMPLE / "app.py", folder / "app.py")
    return folder


def builder_command(dockerfile: dict[str, list[Instruction]]) -> tuple[list[str], str]:
    runs = [split_run(a) for k, a in dockerfile["builder"] if k == "RUN" and "modelctl sync" in a]
    assert len(runs) == 1, "one RUN downloads the models"
    return runs[0]


def build(command: str, app: Path, cache: Path, out: Path, home: Path, endpoint: str) -> None:
    """The builder stage's RUN: /cache/models is the cache mount, /models the output."""
    script = command.replace(CACHE_MOUNT, shlex.quote(str(cache))).replace(
        MODELS, shlex.quote(str(out))
    )
    home.mkdir(exist_ok=True)
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(home),
        "HF_ENDPOINT": endpoint,  # the build arg
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    proc = subprocess.run(["sh", "-c", script], cwd=app, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{script}\n{proc.stdout}\n{proc.stderr}"


def run_app(
    dockerfile: dict[str, list[Instruction]], app: Path, models: Path, home: Path, **extra: str
) -> subprocess.CompletedProcess[str]:
    """The runtime stage's CMD, with its ENV (paths mapped to the test's folders)."""
    runtime = dockerfile["runtime"]
    cmd = json.loads(next(a for k, a in runtime if k == "CMD"))
    env = {
        key: value.replace("/app/", f"{app}/") if key == "MODELCTL_LOCK" else value
        for key, value in env_of(runtime).items()
        if key != "PATH"
    }
    env["MODELCTL_TARGET"] = env["MODELCTL_TARGET"].replace(MODELS, str(models))
    home.mkdir(exist_ok=True)
    env.update(PATH=f"{BIN}:/usr/bin:/bin", HOME=str(home), HF_ENDPOINT=DEAD, **extra)
    return subprocess.run(cmd, cwd=app, env=env, capture_output=True, text=True)


def copy_from(tree: Path, dest: Path) -> Path:
    """COPY --from: real files, fresh inodes and mtimes."""
    shutil.copytree(tree, dest, symlinks=False, copy_function=shutil.copyfile)
    return dest


def content_gets(hub: LocalHub) -> int:
    time.sleep(0.1)  # the server logs a request just after answering it
    return hub.count("GET", "/resolve/")


def test_the_dockerfile_says_what_the_readme_says(
    dockerfile: dict[str, list[Instruction]],
) -> None:
    flags, command = builder_command(dockerfile)
    assert command.startswith("modelctl sync --frozen --target ")
    assert any(f.startswith("--mount=type=cache,") and f"target={CACHE_MOUNT}" in f for f in flags)
    assert any(f.startswith("--mount=type=secret,") and "env=HF_TOKEN" in f for f in flags)
    runtime = dockerfile["runtime"]
    env = env_of(runtime)
    assert env["HF_HUB_OFFLINE"] == "1" and env["MODELCTL_TARGET"] == MODELS
    assert ("COPY", f"--from=builder {MODELS} {MODELS}") in runtime
    assert json.loads(next(a for k, a in runtime if k == "CMD")) == ["python", "app.py"]
    load_manifest(EXAMPLE / "modelctl.yaml")  # the example manifest is valid


def test_builder_then_runtime_commands_offline(
    dockerfile: dict[str, list[Instruction]],
    app: Path,
    tmp_path: Path,
    hub_root: Path,
    local_hub: LocalHub,
) -> None:
    _, command = builder_command(dockerfile)
    cache = tmp_path / "buildkit-cache"
    local_hub.clear_requests()
    build(command, app, cache, tmp_path / "layer1", tmp_path / "home-b1", local_hub.url)
    assert content_gets(local_hub) == 5
    assert (tmp_path / "layer1" / "llm" / "tiny.gguf").stat().st_size == 150_000

    # The runtime stage: a copy of the layer, a fresh HOME, no Hub, HF_HUB_OFFLINE=1.
    models = copy_from(tmp_path / "layer1", tmp_path / "runtime" / "models")
    proc = run_app(dockerfile, app, models, tmp_path / "home-r1")
    assert proc.returncode == 0, proc.stderr
    for name in ("llm/tiny.gguf", "llm/tokenizer.json", "extra/config.json", "extra/notes/a.txt"):
        assert f"{name}: {models}/{name} " in proc.stdout
    proc = run_app(dockerfile, app, models, tmp_path / "home-r1", MODELCTL_VERIFY="full")
    assert proc.returncode == 0, proc.stderr
    (models / "llm" / "tiny.gguf").unlink()
    proc = run_app(dockerfile, app, models, tmp_path / "home-r1")
    assert proc.returncode == 1 and "modelctl sync" in proc.stderr and "tiny.gguf" in proc.stderr

    # A rebuild with the same cache mount downloads nothing.
    local_hub.clear_requests()
    build(command, app, cache, tmp_path / "layer2", tmp_path / "home-b2", local_hub.url)
    assert content_gets(local_hub) == 0

    # The lock changes (one file dropped, one repo updated): only the new file is fetched,
    # and what the lock no longer names leaves the cache and the layer.
    write_repo(hub_root, "org/llm-GGUF", {"tiny.gguf": hashlib.shake_256(b"h").digest(150_000)})
    (app / "modelctl.yaml").write_text(V2)
    assert main(["lock", "--upgrade", "-m", str(app / "modelctl.yaml")]) == 0
    local_hub.clear_requests()
    build(command, app, cache, tmp_path / "layer3", tmp_path / "home-b3", local_hub.url)
    assert content_gets(local_hub) == 1
    assert not (tmp_path / "layer3" / "extra" / "notes").exists()
    assert not (cache / "extra" / "notes").exists()
    models = copy_from(tmp_path / "layer3", tmp_path / "runtime3" / "models")
    proc = run_app(dockerfile, app, models, tmp_path / "home-r3", MODELCTL_VERIFY="full")
    assert proc.returncode == 0, proc.stderr
    assert "notes" not in proc.stdout
