"""examples/docker/Dockerfile, built and run for real with podman (buildah) and runc, and
with the Docker engine (dockerd with BuildKit): every test runs once per engine.

The Dockerfile is used unchanged (``-f examples/docker/Dockerfile``); the build context is
what a user's folder holds: the example's app.py and modelctl.yaml, a modelctl.lock made
here against the local Hub server, and a wheelhouse built on the host. The local Hub
serves the example manifest's repos (a real Silero VAD ONNX, a tiny generated GGUF and its
tokenizer under the example's repo names) and requires a token, which the build gets as a
secret file. Only the build reaches the Hub (``--network host``); the image runs with
``--network none`` as the non-root user the Dockerfile names (``--user 65534`` with docker).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from modelctl.testing.hub import LocalHub
from scripts.assets import GITATTRIBUTES, build_tiny_gguf, fetch_silero_vad
from tests.container.engine import NOBODY, Docker, Layer, Podman

pytestmark = [pytest.mark.container, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "docker"
DOCKERFILE = EXAMPLE / "Dockerfile"
TOKEN = "hf_containertest_" + "x" * 20
VAD_REPO, VAD_FILE = "onnx-community/silero-vad", "onnx/model.onnx"
GGUF_REPO, GGUF_FILE = "Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q4_k_m.gguf"
TOKENIZER_REPO = "Qwen/Qwen2.5-0.5B-Instruct"


@dataclass
class Example:
    """The local Hub, the host side of the builds, and the images made (removed at the end)."""

    engine: Podman | Docker
    base: str
    wheels: Path
    hub: LocalHub
    work: Path
    token_file: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    images: list[str] = field(default_factory=list)

    def context(self, name: str, lock_from: Path | None = None) -> Path:
        """A build context as a user's folder holds it (wheels hard-linked, not copied)."""
        ctx = self.work / name
        ctx.mkdir()
        for item in ("app.py", "modelctl.yaml"):
            shutil.copy(EXAMPLE / item, ctx / item)
        if lock_from is not None:
            shutil.copy(lock_from / "modelctl.lock", ctx / "modelctl.lock")
        (ctx / "wheels").mkdir()
        for wheel in self.wheels.iterdir():
            os.link(wheel, ctx / "wheels" / wheel.name)
        return ctx

    def modelctl(self, ctx: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """modelctl on the host, against the local Hub, the token read from a file."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.work / "home"),
            "HF_HOME": str(self.work / "hf-home"),
            "HF_ENDPOINT": self.hub.url,
            "HF_TOKEN_PATH": str(self.token_file),
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
        return subprocess.run(
            [sys.executable, "-m", "modelctl", *args],
            cwd=ctx,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def lock(self, ctx: Path, *args: str) -> None:
        proc = self.modelctl(ctx, "lock", *args)
        assert proc.returncode == 0, proc.stderr

    def build(
        self, ctx: Path, step: str, **extra_args: str
    ) -> tuple[str, subprocess.CompletedProcess[str]]:
        tag = f"localhost/modelctl-example-test:{self.run_id}-{step}"
        self.images.append(tag)
        started = time.monotonic()
        args = {"PYTHON_IMAGE": self.base, "PIP_NO_INDEX": "1", "HF_ENDPOINT": self.hub.url}
        proc = self.engine.build(
            ctx, DOCKERFILE, tag, {**args, **extra_args}, secrets={"hf_token": self.token_file}
        )
        print(
            f"{self.engine.name} build {step}: exit {proc.returncode} "
            f"in {time.monotonic() - started:.1f} s"
        )
        (self.work / f"build-{step}.log").write_text(proc.stdout + proc.stderr)
        return tag, proc

    def content_gets(self) -> list[str]:
        time.sleep(0.1)  # the server logs a request just after answering it
        return [r.path for r in self.hub.requests if r.method == "GET" and "/resolve/" in r.path]


def write_hub(root: Path) -> None:
    """The example manifest's repos: the real Silero VAD, a tiny GGUF and its tokenizer."""
    vad = root / VAD_REPO / "main"
    (vad / "onnx").mkdir(parents=True)
    shutil.copyfile(fetch_silero_vad(), vad / VAD_FILE)
    gguf = root / GGUF_REPO / "main"
    tokenizer = root / TOKENIZER_REPO / "main"
    gguf.mkdir(parents=True)
    tokenizer.mkdir(parents=True)
    build_tiny_gguf(gguf / GGUF_FILE, tokenizer_dir=tokenizer)
    for repo in (vad, gguf):
        (repo / ".gitattributes").write_text(GITATTRIBUTES)


def change_tokenizer_config(hub_root: Path, marker: str) -> None:
    """A new tokenizer_config.json for the llm asset (a new commit of its tokenizer repo)."""
    path = hub_root / TOKENIZER_REPO / "main" / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["modelctl_test_marker"] = marker
    path.write_text(json.dumps(config, indent=2))


def describe(
    engine: Podman | Docker,
    image: str,
    layers: dict[str, Layer],
    since: dict[str, Layer] | None = None,
) -> str:
    """The image's size and layer list (with, against ``since``, reused or new)."""
    lines = [f"{engine.name} image {image}: {engine.image_size(image):,} bytes"]
    for step, layer in layers.items():
        state = ""
        if since is not None:
            state = "reused" if step in since and since[step].digest == layer.digest else "new"
        lines.append(f"  {step:8} {layer.digest[:19]} {layer.size:>12,}  {state}")
    return "\n".join(lines)


def by_step(layers: list[Layer]) -> dict[str, Layer]:
    """Layers named by what made them: base, /opt/venv, /models/<asset>, app (and, with
    BuildKit, the runtime stage's WORKDIR). Buildah writes ``... COPY dir:... in /DEST``,
    BuildKit ``COPY SRC /DEST # buildkit``."""
    named: dict[str, Layer] = {}
    for i, layer in enumerate(layers):
        instruction = layer.created_by.removesuffix(" # buildkit").strip()
        if i == 0:
            named["base"] = layer
        elif instruction.endswith((" in /opt/venv", " /opt/venv")):
            named["venv"] = layer
        elif m := re.search(r"(?: in | )/models/(\S+)$", instruction):
            named[m.group(1)] = layer
        elif instruction.endswith((" in ./", " ./")):
            named["app"] = layer
        elif instruction.startswith("WORKDIR "):
            named["workdir"] = layer
        else:
            raise AssertionError(f"unexpected layer: {layer}")
    return named


@pytest.fixture(scope="module")
def example(
    engine: Podman | Docker, base: str, wheels: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Example]:
    work = tmp_path_factory.mktemp("example-image")
    hub_root = work / "hub"
    write_hub(hub_root)
    token_file = work / "hf_token"
    token_file.write_text(TOKEN + "\n")
    with LocalHub(hub_root, token=TOKEN) as hub:
        ex = Example(engine, base, wheels, hub, work, token_file)
        try:
            yield ex
        finally:
            engine.remove(*ex.images)


@pytest.fixture(scope="module")
def first(example: Example) -> tuple[Path, str]:
    """The example locked against the local Hub and built: (context, image)."""
    ctx = example.context("first")
    example.lock(ctx)
    tag, proc = example.build(ctx, "first")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return ctx, tag


def test_the_dockerfile_has_one_copy_per_locked_asset(
    example: Example, first: tuple[Path, str]
) -> None:
    ctx, _ = first
    proc = example.modelctl(ctx, "dockerfile")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == [
        "COPY --from=builder /models/llm /models/llm",
        "COPY --from=builder /models/vad /models/vad",
    ]
    dockerfile = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    copies = [line for line in dockerfile if line.startswith("COPY --from=builder /models")]
    assert copies == lines, "the runtime stage's COPY lines are what `modelctl dockerfile` prints"


def test_image_runs_offline_as_non_root_and_loads_the_vad(
    example: Example, first: tuple[Path, str]
) -> None:
    engine = example.engine
    _, image = first
    started = time.monotonic()
    proc = engine.run(image)
    print(f"run: {time.monotonic() - started:.1f} s\n{proc.stdout}")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for name, size in (
        (f"llm/{GGUF_FILE}", None),
        ("llm/tokenizer.json", None),
        ("llm/tokenizer_config.json", None),
        (f"vad/{VAD_FILE}", 1_289_603),
    ):
        assert f"{name}: /models/{name} (" in out, out
        if size is not None:
            assert f"/models/{name} ({size} bytes)" in out
    assert "loaded vad: onnxruntime InferenceSession, inputs input, state, sr" in out
    assert "vad: speech probability " in out

    # Hashing every file against the lock passes too.
    full = engine.run(image, options=("--env", "MODELCTL_VERIFY=full"))
    assert full.returncode == 0, full.stderr

    # The runtime stage: user nobody, no network, nothing of the builder stage, no token.
    probe = engine.run(
        image,
        "sh",
        "-c",
        "id -u; ls /sys/class/net; test ! -e /wheels && test ! -e /cache && echo slim",
    )
    assert probe.returncode == 0, probe.stderr
    uid, *interfaces, slim = probe.stdout.split()
    assert uid == NOBODY and interfaces == ["lo"] and slim == "slim", probe.stdout
    inspected = engine.call("image", "inspect", image)
    history = engine.call("history", "--no-trunc", image)
    assert TOKEN not in inspected.stdout + history.stdout
    assert json.loads(inspected.stdout)[0]["Config"]["User"] == f"{NOBODY}:{NOBODY}"

    # A file missing from the image: the app names it and `modelctl sync`, exit 1.
    gone = engine.run(
        image,
        "sh",
        "-c",
        f"rm /models/vad/{VAD_FILE} && exec python app.py",
        options=("--user", "0"),
    )
    assert gone.returncode == 1, gone.stdout + gone.stderr
    assert "modelctl sync" in gone.stderr and VAD_FILE in gone.stderr


def test_one_asset_change_reuses_the_other_layers(
    example: Example, first: tuple[Path, str]
) -> None:
    first_ctx, first_image = first
    change_tokenizer_config(example.hub.root, f"reuse-{example.run_id}")
    ctx = example.context("second", lock_from=first_ctx)
    example.lock(ctx, "--upgrade-asset", "llm")
    example.hub.clear_requests()
    image, proc = example.build(ctx, "second")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    # The cache mount kept every unchanged file: only the new one was downloaded.
    assert [p.rsplit("/", 1)[1] for p in example.content_gets()] == ["tokenizer_config.json"]

    engine = example.engine
    before, after = by_step(engine.layers(first_image)), by_step(engine.layers(image))
    print(describe(engine, first_image, before))
    print(describe(engine, image, after, since=before))
    steps = ["base", "venv", "llm", "vad", "app"]
    if isinstance(engine, Docker):  # BuildKit's WORKDIR makes a layer (cached: up front)
        steps.insert(1, "workdir")
    assert list(after) == steps
    # Every layer before the changed asset's is reused (cache hit, same digest). After it,
    # the layers are made again; they come out byte-identical, same digest, only where the
    # engine clamps file times (podman --timestamp 0; not dockerd 20.10's BuildKit).
    first_changed = steps.index("llm")
    same = steps[:first_changed] + (["vad"] if engine.reproducible_layers else [])
    for step in same:
        assert after[step].digest == before[step].digest, f"layer {step} was not reused"
    for step in (s for s in steps if s not in same):
        assert after[step].digest != before[step].digest, f"layer {step} unchanged?"
    new_bytes = sum(layer.size for layer in after.values() if layer.digest not in
                    {b.digest for b in before.values()})  # fmt: skip
    model_bytes = after["llm"].size + after["vad"].size
    print(
        f"{engine.name}: one-asset lock change (llm's tokenizer_config.json): {new_bytes:,} "
        f"bytes of layers changed ({', '.join(s for s in steps if s not in same)}) of "
        f"{sum(x.size for x in after.values()):,}; one COPY of /models would change "
        f"{model_bytes + after['app'].size:,}"
    )
    assert new_bytes == sum(after[s].size for s in steps if s not in same)

    run = example.engine.run(image)
    assert run.returncode == 0, run.stderr
    assert "loaded vad: onnxruntime InferenceSession" in run.stdout


def test_tampered_file_on_the_hub_fails_the_build_with_exit_4(
    example: Example, first: tuple[Path, str]
) -> None:
    first_ctx, _ = first
    change_tokenizer_config(example.hub.root, f"tamper-{example.run_id}")
    ctx = example.context("tampered", lock_from=first_ctx)
    example.lock(ctx, "--upgrade-asset", "llm")
    example.hub.faults.set(wrong_bytes=True, paths={"tokenizer_config.json"})
    try:
        image, proc = example.build(ctx, "tampered")
    finally:
        example.hub.faults.reset()
    output = proc.stdout + proc.stderr
    errors = [
        line for line in output.splitlines() if "integrity error" in line or "exit code" in line
    ]
    print("\n".join(errors[-3:]))
    # podman exits with the failed step's code; docker exits 1 and names it.
    assert proc.returncode != 0, output[-4000:]
    assert example.engine.step_exit_code(proc) == 4, output[-4000:]
    assert "integrity error" in output and "tokenizer_config.json" in output
    assert not example.engine.image_exists(image), "a failed build leaves no image"
