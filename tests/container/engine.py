"""Real OCI build engines for the container tests: podman (buildah inside) with runc, and
the Docker engine (a ``dockerd`` started for the tests, BuildKit inside).

What this machine kind needs (checked on Debian 12, 2 cores, root):

- crun fails here (hybrid cgroups, then setrlimit EPERM): every podman call gets
  ``--runtime runc --cgroup-manager cgroupfs``, and ``build``/``run`` explicit ulimits;
- no base-image registry is reachable: the base image is made from Debian packages with
  ``debootstrap`` (about 90 s), kept as a tarball in a cache folder outside the repository,
  keyed by its inputs, and ``podman import``-ed (about 5 s) when podman lacks it;
- the package index is not reachable inside a build: modelctl and its dependencies come
  from a wheelhouse made on the host (``pip wheel``);
- Docker: Debian's ``docker.io`` (dockerd 20.10, containerd, runc) runs as root with its
  own data root, exec root, socket and pidfile, ``--iptables=false --bridge=none``. The
  daemon carries BuildKit; a client drives it: ``docker buildx`` where the plugin is
  installed, else a docker CLI older than 23.0, which has a BuildKit client built in
  (Debian's 20.10 does, with ``DOCKER_BUILDKIT=1``). A CLI 23+ without buildx refuses
  BuildKit ("BuildKit is enabled but the buildx component is missing or broken"), so
  such a ``docker`` on ``PATH`` is passed over.
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
import signal
import socket
import subprocess
import sys
import tempfile
import time
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


NOBODY = "65534"


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

    name = "podman"
    # `build --timestamp 0`: a layer made again from the same files has the same digest.
    reproducible_layers = True

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

    @staticmethod
    def step_exit_code(proc: subprocess.CompletedProcess[str]) -> int | None:
        """The exit code of the RUN step that failed the build: podman exits with it."""
        return proc.returncode

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

    def image_size(self, image: str) -> int:
        proc = self.call("image", "inspect", "--format", "{{.Size}}", image)
        if proc.returncode != 0:
            raise AssertionError(f"cannot inspect {image}: {proc.stderr}")
        return int(proc.stdout)


# --------------------------------------------------------------------------- docker

DOCKERD_START_TIMEOUT_S = 60
DOCKERD_STOP_TIMEOUT_S = 30
STORAGE_DRIVERS = ("overlay2", "vfs")  # overlay2 where the temp folder's filesystem allows


def _cli_version(cli: str) -> tuple[int, ...] | None:
    proc = subprocess.run(
        [cli, "version", "--format", "{{.Client.Version}}"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent.sock"},
    )
    m = re.match(r"(\d+)\.(\d+)", proc.stdout.strip())
    return tuple(int(n) for n in m.groups()) if m else None


def docker_cli() -> tuple[str, str]:
    """A docker CLI that can drive BuildKit, and how: ``(path, "buildx" | "built-in")``.

    ``$MODELCTL_DOCKER_CLI`` if set, else each ``docker`` on ``PATH`` in order, then
    Debian's ``/usr/bin/docker``: the first with the buildx plugin, or older than 23.0
    (BuildKit client built in).
    """
    configured = os.environ.get("MODELCTL_DOCKER_CLI")
    if configured:
        if not os.access(configured, os.X_OK):
            raise AssertionError(f"MODELCTL_DOCKER_CLI={configured}: no such program")
        candidates = [configured]
    else:
        dirs = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin"]
        candidates = []
        for d in dirs:
            path = Path(d or ".") / "docker"
            if os.access(path, os.X_OK) and path.resolve() not in {
                Path(c).resolve() for c in candidates
            }:
                candidates.append(str(path))
    if not candidates:
        raise EngineUnavailable(
            "docker not installed (`bash .ci/run` installs Debian's docker.io with apt-get)"
        )
    seen = []
    for cli in candidates:
        buildx = subprocess.run(
            [cli, "buildx", "version"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        if buildx.returncode == 0:
            return cli, "buildx"
        version = _cli_version(cli)
        if version is not None and version < (23,):
            return cli, "built-in"
        seen.append(f"{cli} ({'.'.join(map(str, version or ())) or 'version unknown'})")
    # Installed but unusable: an error, not a skip.
    raise AssertionError(
        f"no docker CLI here can build with BuildKit: {', '.join(seen)} "
        "lack the buildx plugin, and CLIs from 23.0 on have no BuildKit client of their own; "
        "install the buildx plugin, or Debian's docker.io (its /usr/bin/docker 20.10 has one)"
    )


def _ping(sock: Path) -> bool:
    """Whether the Engine API answers on the unix socket ``sock``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status = s.recv(64).split(b"\r\n", 1)[0].split()
            return len(status) >= 2 and status[1] == b"200"
    except OSError:
        return False


class Dockerd:
    """A ``dockerd`` of the tests' own: data root, exec root, socket and pidfile in a temp
    folder, no iptables, no bridge (builds use the host network, runs ``--network none``).
    It is stopped by its pid (SIGTERM, then SIGKILL of its process group) and its folder
    removed."""

    def __init__(self) -> None:
        if shutil.which("dockerd") is None:
            raise EngineUnavailable(
                "dockerd not installed (`bash .ci/run` installs Debian's docker.io with apt-get)"
            )
        if os.geteuid() != 0:
            raise EngineUnavailable("dockerd needs root here (rootless docker is not set up)")
        self.root = Path(tempfile.mkdtemp(prefix="modelctl-dockerd-"))
        self.sock = self.root / "docker.sock"
        self.data_root = self.root / "data"
        self.pidfile = self.root / "dockerd.pid"
        self.log = self.root / "dockerd.log"
        self.driver = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        errors = []
        for driver in STORAGE_DRIVERS:
            if self._start(driver):
                self.driver = driver
                return
            errors.append(f"--storage-driver {driver}: {self.log.read_text()[-800:]}")
        # Installed but not starting: an error, not a skip.
        raise AssertionError("dockerd does not start here:\n" + "\n".join(errors))

    def _start(self, driver: str) -> bool:
        config = self.root / "daemon.json"  # not /etc/docker/daemon.json
        config.write_text("{}\n")
        cmd = [
            "dockerd",
            "--config-file", str(config),
            "--data-root", str(self.data_root),
            "--exec-root", str(self.root / "exec"),
            "--host", f"unix://{self.sock}",
            "--pidfile", str(self.pidfile),
            "--storage-driver", driver,
            "--iptables=false",
            "--ip-masq=false",
            "--bridge=none",
            # Where a system containerd runs, dockerd uses it: keep apart from its dockerd.
            "--containerd-namespace", "modelctl-test",
            "--containerd-plugins-namespace", "modelctl-test-plugins",
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + DOCKERD_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if self.sock.exists() and _ping(self.sock):
                return True
            time.sleep(0.2)
        self.stop(remove=False)
        return False

    def stop(self, remove: bool = True) -> None:
        """SIGTERM to dockerd's pid (it stops its containerd), SIGKILL to its process group
        after a timeout; then the temp folder (once nothing of it is mounted) goes."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(DOCKERD_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if remove:
            mounts = [
                line.split()[1]
                for line in Path("/proc/self/mounts").read_text().splitlines()
                if line.split()[1].startswith(str(self.root) + "/")
            ]
            for mount in sorted(mounts, reverse=True):
                subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
            shutil.rmtree(self.root)


class Docker:
    """The docker CLI against a :class:`Dockerd`; builds with BuildKit."""

    name = "docker"
    # dockerd 20.10's BuildKit (0.8) stamps the directories a COPY creates or changes with
    # the build's time and has no SOURCE_DATE_EPOCH clamp: a step that runs again makes a
    # layer with a new digest even from the same files.
    reproducible_layers = False

    def __init__(self, daemon: Dockerd, cli: str, client: str) -> None:
        self.daemon = daemon
        self.cli = cli
        self.client = client
        self.config = daemon.root / "client-config"  # no ~/.docker of the user's
        self.config.mkdir(exist_ok=True)
        version = self.call("version", "--format", "{{.Server.Version}}", timeout=120)
        if version.returncode != 0:
            raise AssertionError(f"`docker version` fails: {version.stderr.strip()[-400:]}")
        self.server_version = version.stdout.strip()

    def env(self, buildkit: bool = True) -> dict[str, str]:
        return {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.daemon.sock}",
            "DOCKER_CONFIG": str(self.config),
            "DOCKER_BUILDKIT": "1" if buildkit else "0",
        }

    def call(
        self, *args: str, timeout: float = RUN_TIMEOUT_S, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.cli, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else self.env(),
            stdin=subprocess.DEVNULL,
        )

    def image_exists(self, ref: str) -> bool:
        return self.call("image", "inspect", "--format", "{{.Id}}", ref).returncode == 0

    def build(
        self,
        context: Path,
        dockerfile: Path,
        tag: str,
        build_args: Mapping[str, str],
        secrets: Mapping[str, Path] | None = None,
        buildkit: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """``docker build`` with BuildKit (``DOCKER_BUILDKIT=1``; ``buildkit=False`` runs
        the legacy builder) and the host network, so that only the build reaches the
        local Hub."""
        args = ["build", "--network", "host", "-f", str(dockerfile), "-t", tag]
        if buildkit:
            args += ["--progress", "plain"]
        for key, value in build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        for name, path in (secrets or {}).items():
            args += ["--secret", f"id={name},src={path}"]
        return self.call(
            *args, str(context), timeout=BUILD_TIMEOUT_S, env=self.env(buildkit=buildkit)
        )

    @staticmethod
    def step_exit_code(proc: subprocess.CompletedProcess[str]) -> int | None:
        """The exit code of the RUN step that failed the build: ``docker build`` itself
        exits 1 and names it in its output (``... exit code: 4``)."""
        found = re.findall(r"exit code: (\d+)", proc.stdout + proc.stderr)
        return int(found[-1]) if found else None

    def run(
        self, image: str, *command: str, options: Sequence[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        """``docker run --rm --network none --user 65534``: no network at all, user nobody
        (``options`` come after, so ``--user 0`` there wins)."""
        return self.call(
            "run", "--rm", "--network", "none", "--user", NOBODY, *options, image, *command
        )

    def layers(self, image: str) -> list[Layer]:
        """The image's layers, oldest first, each with the instruction that made it (read
        from the image config in the daemon's data root: the API shows no empty_layer)."""
        image_id = self.call("image", "inspect", "--format", "{{.Id}}", image)
        history = self.call("history", "--no-trunc", "--human=false", "--format",
                            "{{.Size}}", image)  # fmt: skip
        for proc in (image_id, history):
            if proc.returncode != 0:
                raise AssertionError(f"cannot inspect {image}: {proc.stderr}")
        algo, hexdigest = image_id.stdout.strip().split(":", 1)
        imagedb = self.daemon.data_root / "image" / self.daemon.driver / "imagedb"
        config = json.loads((imagedb / "content" / algo / hexdigest).read_text())
        sizes = [int(line) for line in reversed(history.stdout.split())]
        made = [
            (h.get("created_by", ""), size)
            for h, size in zip(config["history"], sizes, strict=True)
            if not h.get("empty_layer")
        ]
        digests = config["rootfs"]["diff_ids"]
        return [Layer(by, d, size) for (by, size), d in zip(made, digests, strict=True)]

    def remove(self, *images: str) -> None:
        for image in images:
            if self.image_exists(image):
                self.call("rmi", "--force", image)

    def image_size(self, image: str) -> int:
        proc = self.call("image", "inspect", "--format", "{{.Size}}", image)
        if proc.returncode != 0:
            raise AssertionError(f"cannot inspect {image}: {proc.stderr}")
        return int(proc.stdout)


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


def base_image(engine: Podman | Docker) -> str:
    """A Debian image with python3 and venv: imported from the cache, else made once.

    The tag and the cached tarball are named by a hash of every input (suite, mirror,
    architecture, packages, recipe), so a change of any of them makes a new base.
    """
    suite = _os_release().get("VERSION_CODENAME") or "bookworm"
    mirror = _apt_mirror(suite)
    inputs = [BASE_RECIPE, suite, mirror, platform.machine(), *BASE_PACKAGES]
    key = hashlib.sha256("\n".join(inputs).encode()).hexdigest()[:16]
    tag = f"localhost/modelctl-test-base:{key}"  # `podman import`, `docker import` alike
    cache = cache_dir()
    tarball = cache / f"debian-{suite}-{key}.tar"
    with _locked(cache / ".base.lock"):
        if engine.image_exists(tag):
            return tag
        if not tarball.exists():
            _debootstrap(suite, mirror, tarball)
        proc = engine.call("import", str(tarball), tag, timeout=600)
        if proc.returncode != 0:
            raise AssertionError(f"{engine.name} import {tarball} failed: {proc.stderr}")
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
