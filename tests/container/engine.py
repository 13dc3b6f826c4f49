"""A real OCI build engine for the container tests: podman (buildah inside) with runc.

What this machine kind needs (checked on Debian 12, 2 cores, root):

- crun fails here (hybrid cgroups, then setrlimit EPERM): every podman call gets
  ``--runtime runc --cgroup-manager cgroupfs``, and ``build``/``run`` explicit ulimits;
- no base-image registry is reachable: the base image is made from Debian packages with
  ``debootstrap`` (about 90 s), kept as a tarball in a cache folder outside the repository,
  keyed by its inputs, and ``podman import``-ed (about 5 s) when podman lacks it;
- the package index is not reachable inside a build: modelctl and its dependencies come
  from a wheelhouse made on the host (``pip wheel``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PODMAN = ("podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs")
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
BASE_PACKAGES = ("python3", "python3-venv")
BASE_RECIPE = "1"  # bump when the way the base image is made changes
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BUILD_TIMEOUT_S = 1200
RUN_TIMEOUT_S = 300


class EngineUnavailable(Exception):
    """The container engine genuinely cannot run on this machine (the reason says why)."""


@dataclass(frozen=True)
class Layer:
    """One layer of an image: what made it, its diff ID and its uncompressed size."""

    created_by: str
    digest: str
    size: int


def cache_dir() -> Path:
    """``$MODELCTL_CONTAINER_CACHE``, else ``~/.cache/modelctl-container``."""
    configured = os.environ.get("MODELCTL_CONTAINER_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "modelctl-container"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock: concurrent test runs on one machine make the base image once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class Podman:
    """podman with the flags this machine needs; every call is a subprocess."""

    def __init__(self) -> None:
        missing = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
        if missing:
            raise EngineUnavailable(
                f"{' and '.join(missing)} not installed (`bash .ci/run` installs podman, "
                "buildah, runc and debootstrap with apt-get)"
            )
        info = self.call("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=120)
        if info.returncode != 0:
            raise EngineUnavailable(f"`podman info` fails here: {info.stderr.strip()[-400:]}")

    def call(
        self, *args: str, timeout: float = RUN_TIMEOUT_S, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*PODMAN, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
        )

    def image_exists(self, ref: str) -> bool:
        return self.call("image", "exists", ref).returncode == 0

    def build(
        self,
        context: Path,
        dockerfile: Path,
        tag: str,
        build_args: Mapping[str, str],
        secrets: Mapping[str, Path] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``podman build`` with the host network (only the build reaches the local Hub)
        and ``--timestamp 0``, so that a layer made again from the same files is
        byte-identical (same digest) to the one made before."""
        args = ["build", *ULIMITS, "--network", "host", "--timestamp", "0", "--layers"]
        args += ["-f", str(dockerfile), "-t", tag]
        for key, value in build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        for name, path in (secrets or {}).items():
            args += ["--secret", f"id={name},src={path}"]
        return self.call(*args, str(context), timeout=BUILD_TIMEOUT_S)

    def run(
        self, image: str, *command: str, options: Sequence[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        """``podman run --rm --network none``: the container has no network at all."""
        return self.call("run", "--rm", *ULIMITS, "--network", "none", *options, image, *command)

    def layers(self, image: str) -> list[Layer]:
        """The image's layers, oldest first, each with the instruction that made it."""
        inspected = self.call("image", "inspect", image)
        history = self.call("history", "--format", "json", image)
        for proc in (inspected, history):
            if proc.returncode != 0:
                raise AssertionError(f"cannot inspect {image}: {proc.stderr}")
        config = json.loads(inspected.stdout)[0]
        sizes = [int(h["size"]) for h in reversed(json.loads(history.stdout))]
        entries = config["History"]
        made = [
            (h["created_by"], size)
            for h, size in zip(entries, sizes, strict=True)
            if not h.get("empty_layer")
        ]
        digests = config["RootFS"]["Layers"]
        return [Layer(by, d, size) for (by, size), d in zip(made, digests, strict=True)]

    def remove(self, *images: str) -> None:
        for image in images:
            if self.image_exists(image):
                self.call("rmi", "--force", image)


# --------------------------------------------------------------------------- base image


def _os_release() -> dict[str, str]:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key: value.strip().strip('"') for key, value in pairs}


def _apt_mirror(suite: str) -> str:
    """The Debian mirror apt is configured with for ``suite`` (deb822 or one-line form)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for stanza in path.read_text().split("\n\n"):
            fields = dict(
                (k.strip(), v.strip())
                for k, _, v in (line.partition(":") for line in stanza.splitlines())
                if not k.startswith("#")
            )
            if suite in fields.get("Suites", "").split() and fields.get("URIs"):
                return fields["URIs"].split()[0]
    one_line = Path("/etc/apt/sources.list")
    if one_line.exists():
        for line in one_line.read_text().splitlines():
            m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s", line + " ")
            if m and m.group(2) == suite:
                return m.group(1)
    return DEFAULT_MIRROR


def base_image(engine: Podman) -> str:
    """A Debian image with python3 and venv: imported from the cache, else made once.

    The tag and the cached tarball are named by a hash of every input (suite, mirror,
    architecture, packages, recipe), so a change of any of them makes a new base.
    """
    suite = _os_release().get("VERSION_CODENAME") or "bookworm"
    mirror = _apt_mirror(suite)
    inputs = [BASE_RECIPE, suite, mirror, platform.machine(), *BASE_PACKAGES]
    key = hashlib.sha256("\n".join(inputs).encode()).hexdigest()[:16]
    tag = f"localhost/modelctl-test-base:{key}"
    cache = cache_dir()
    tarball = cache / f"debian-{suite}-{key}.tar"
    with _locked(cache / ".base.lock"):
        if engine.image_exists(tag):
            return tag
        if not tarball.exists():
            _debootstrap(suite, mirror, tarball)
        proc = engine.call("import", str(tarball), tag, timeout=600)
        if proc.returncode != 0:
            raise AssertionError(f"podman import {tarball} failed: {proc.stderr}")
    return tag


def _debootstrap(suite: str, mirror: str, tarball: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise EngineUnavailable("debootstrap not installed (`bash .ci/run` installs it)")
    with tempfile.TemporaryDirectory(dir=tarball.parent, prefix=".rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}"]
        proc = subprocess.run(
            [*cmd, suite, str(rootfs), mirror],
            capture_output=True,
            text=True,
            timeout=1200,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"debootstrap {suite} from {mirror} failed:\n{proc.stdout[-3000:]}"
            )
        partial = Path(tmp) / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], check=True
        )
        partial.rename(tarball)


# --------------------------------------------------------------------------- wheelhouse


def wheelhouse(repo: Path, out: Path, extras: str = "onnx") -> Path:
    """modelctl's wheel (built from a copy of the source, so the checkout stays clean) and
    every dependency's, for ``pip install --no-index --find-links``."""
    src = out.parent / f"{out.name}-src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, src / name)
    shutil.copytree(
        repo / "modelctl", src / "modelctl", ignore=shutil.ignore_patterns("__pycache__")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(out), f"{src}[{extras}]"],
        capture_output=True,
        text=True,
        timeout=1200,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise AssertionError(f"pip wheel failed:\n{proc.stderr[-3000:]}")
    shutil.rmtree(src)
    return out
