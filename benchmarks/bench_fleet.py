"""What one machine's sync costs the server, so the cost of a fleet can be computed.

One lock, N "machines" (each a fresh HOME and HF cache, a separate ``modelctl`` process)
against one LocalHub on loopback, as a shared mirror would serve them:

- ``lock``: once per lock change (any machine, or CI), not per machine;
- ``cold sync``: ``modelctl sync --frozen`` into an empty cache;
- ``warm sync``: the same command again (everything present);
- ``--redirect-lfs``: LFS downloads answered with a redirect, as the Hub does (to its
  CDN): one more request per LFS file;
- ``from bundle``: ``modelctl bundle`` once, then ``sync --frozen --from-bundle`` on each
  machine: the server sees nothing; each machine reads the bundle once (from an object
  store, say), whose size is reported.

Requests and response-body bytes come from the server's own log (headers are not
counted: about 0.3-0.5 KiB per request). Run
``python -m benchmarks.bench_fleet [--machines 3 --files 2 --size-mib 32] [--json]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from modelctl.lock import lockfile
from modelctl.testing.hub import LocalHub, RequestRecord

MiB = 1024 * 1024
MANIFEST = """\
assets:
  llm:
    kind: gguf
    repo: bench/llm-GGUF
    file: model.gguf
    tokenizer:
      repo: bench/llm
  weights:
    repo: bench/weights
    files: ["*.safetensors", config.json]
"""


@dataclass(frozen=True)
class Cost:
    step: str
    requests: int
    by_kind: dict[str, int]  # "GET /resolve", "HEAD /resolve", "GET /api", ...
    body_bytes: int
    seconds: float


def make_repos(root: Path, files: int, size: int) -> int:
    """The repos the lock names; returns the locked content size."""

    def write(repo: str, content: dict[str, bytes], lfs: str | None = None) -> None:
        base = root / repo / "main"
        base.mkdir(parents=True)
        for name, data in content.items():
            (base / name).write_bytes(data)
        if lfs:
            (base / ".gitattributes").write_text(f"{lfs} filter=lfs diff=lfs merge=lfs -text\n")

    def data(seed: str, n: int) -> bytes:
        return hashlib.shake_256(seed.encode()).digest(n)

    weights = {f"model-{i:05d}.safetensors": data(f"w{i}", size) for i in range(files)}
    write("bench/weights", {**weights, "config.json": b'{"hidden_size": 64}'}, "*.safetensors")
    write("bench/llm-GGUF", {"model.gguf": data("g", size)}, "*.gguf")
    tokenizer = {"tokenizer.json": b"{}" * 20_000, "tokenizer_config.json": b"{}"}
    write("bench/llm", tokenizer)
    return (files + 1) * size + 19 + 40_000 + 2


def settle(hub: LocalHub) -> list[RequestRecord]:
    """The server logs a request just after answering it: wait for the log to stop growing."""
    seen = -1
    while len(hub.requests) != seen:
        seen = len(hub.requests)
        time.sleep(0.05)
    return list(hub.requests)


def kind(r: RequestRecord) -> str:
    for part in ("/resolve/", "/api/", "/blobs/"):
        if part in r.path:
            return f"{r.method} {part.strip('/')}"
    return f"{r.method} other"


def measure(step: str, hub: LocalHub, cmd: list[str], cwd: Path, env: dict[str, str]) -> Cost:
    settle(hub)
    hub.clear_requests()
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    log = settle(hub)
    return Cost(
        step,
        len(log),
        dict(sorted(Counter(kind(r) for r in log).items())),
        sum(r.bytes_sent for r in log),
        seconds,
    )


def machine_env(base: Path, name: str, endpoint: str) -> dict[str, str]:
    home = base / name
    home.mkdir()
    return {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "HF_HOME": str(home / "hf"),
        "HF_ENDPOINT": endpoint,
        # A fresh huggingface_hub process otherwise sends one telemetry request; modelctl
        # sync makes none of its own, and this keeps the numbers about the files.
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def run(machines: int, files: int, size_mib: int, redirect_lfs: bool) -> dict[str, object]:
    modelctl = [sys.executable, "-m", "modelctl"]
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        base = Path(tmp)
        content = make_repos(base / "hub", files, size_mib * MiB)
        app = base / "app"
        app.mkdir()
        (app / "modelctl.yaml").write_text(MANIFEST)
        costs: list[Cost] = []
        with LocalHub(base / "hub") as hub:
            # The real Hub answers LFS downloads with a redirect to its CDN.
            hub.faults.set(redirect_lfs=redirect_lfs)
            env = machine_env(base, "ci", hub.url)
            costs.append(measure("lock (once per lock)", hub, [*modelctl, "lock"], app, env))
            n_files = sum(1 for _ in _locked(app))
            for i in range(machines):
                env = machine_env(base, f"m{i}", hub.url)
                sync = [*modelctl, "sync", "--frozen", "-q"]
                costs.append(measure(f"machine {i}: cold sync", hub, sync, app, env))
                costs.append(measure(f"machine {i}: warm sync", hub, sync, app, env))
            # The object-store pattern: one bundle, machines install from it.
            env = machine_env(base, "bundler", hub.url)
            bundle = base / "models.tar"
            costs.append(measure("bundler: cold sync", hub, [*modelctl, "sync", "--frozen",
                                                              "-q"], app, env))  # fmt: skip
            costs.append(measure("bundler: bundle", hub, [*modelctl, "bundle", str(bundle)],
                                 app, env))  # fmt: skip
            for i in range(machines):
                env = machine_env(base, f"b{i}", hub.url)
                cmd = [*modelctl, "sync", "--frozen", "-q", "--from-bundle", str(bundle)]
                costs.append(measure(f"machine {i}: sync --from-bundle", hub, cmd, app, env))
            bundle_bytes = bundle.stat().st_size
    cold = [c for c in costs if c.step.endswith(": cold sync") and c.step.startswith("machine")]
    return {
        "machines": machines,
        "redirect_lfs": redirect_lfs,
        "locked_files": n_files,
        "locked_bytes": content,
        "bundle_bytes": bundle_bytes,
        "per_machine_cold": {
            "requests": cold[0].requests,
            "body_bytes": cold[0].body_bytes,
            "overhead_bytes": cold[0].body_bytes - content,
        },
        "steps": [asdict(c) for c in costs],
    }


def _locked(app: Path) -> list[str]:
    lock = lockfile.load(app / "modelctl.lock")
    return [r.path for r in lock.files()]


def report(result: dict[str, object]) -> None:
    steps = result["steps"]
    assert isinstance(steps, list)
    print(f"{'step':<34} {'requests':>8} {'body bytes':>14} {'seconds':>8}  kinds")
    for s in steps:
        kinds = ", ".join(f"{k} x{v}" for k, v in s["by_kind"].items())
        print(
            f"{s['step']:<34} {s['requests']:>8} {s['body_bytes']:>14,} {s['seconds']:>8.2f}  "
            f"{kinds}"
        )
    per = result["per_machine_cold"]
    assert isinstance(per, dict)
    print()
    print(
        f"locked: {result['locked_files']} files, {result['locked_bytes']:,} bytes; "
        f"bundle: {result['bundle_bytes']:,} bytes"
    )
    print(
        f"per machine, cold: {per['requests']} requests, {per['body_bytes']:,} body bytes "
        f"({per['overhead_bytes']:,} beyond the content); warm: 0 requests"
    )
    print(
        "N machines through a mirror: N x that; from a bundle: 0 requests to the Hub or "
        "mirror, N reads of the bundle from the object store, plus one sync for the bundle."
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_fleet", description=__doc__)
    p.add_argument("--machines", type=int, default=3)
    p.add_argument("--files", type=int, default=2, help="safetensors shards (plus one gguf)")
    p.add_argument("--size-mib", type=int, default=32, help="size of each large file")
    p.add_argument(
        "--redirect-lfs",
        action="store_true",
        help="answer LFS downloads with a redirect to /blobs/, as the Hub does to its CDN",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    result = run(args.machines, args.files, args.size_mib, args.redirect_lfs)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
