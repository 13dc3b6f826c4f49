"""What one node costs an OCI registry, so the cost of a fleet can be computed.

A real docker-registry (CNCF Distribution 2.8, filesystem storage) on loopback, behind a
counting proxy (:class:`tests.support.servers.registry.Proxy`: requests and response-body
bytes, as the registry sent them). The lock of ``bench_fleet`` (two safetensors shards, a
GGUF, a tokenizer, two small JSON files); each "node" is a fresh HOME and HF cache and a
separate ``modelctl`` process; the local Hub is stopped before any node syncs.

- ``push``: CI pushes the lock (first time; again unchanged; after a one-file change);
- ``cold sync``: ``modelctl sync --frozen --from oci://...`` into an empty cache;
- ``warm sync``: the same again (everything present);
- ``one-file update``: the node gets the new lock and syncs from the new tag.

Run ``python -m benchmarks.bench_registry [--nodes 2 --files 2 --size-mib 32] [--json]``
(needs ``docker-registry``, as the tests do).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.bench_fleet import MANIFEST, MiB, machine_env, make_repos
from modelctl.testing.hub import LocalHub
from tests.support.servers import registry as reg


@dataclass(frozen=True)
class Cost:
    step: str
    requests: int
    by_kind: dict[str, int]
    body_bytes: int
    seconds: float
    note: str = ""


def kind(method: str, path: str) -> str:
    for part in ("/manifests/", "/blobs/uploads/", "/blobs/"):
        if part in path:
            return f"{method} {part.strip('/')}"
    return f"{method} {path.split('?')[0]}"


def measure(
    step: str, proxy: reg.Proxy, cmd: list[str], cwd: Path, env: dict[str, str]
) -> tuple[Cost, str]:
    time.sleep(0.05)
    start = len(proxy.log.requests)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    time.sleep(0.05)
    log = proxy.log.requests[start:]
    note = next((line for line in proc.stderr.splitlines() if line.startswith("pushed:")), "")
    cost = Cost(
        step,
        len(log),
        dict(sorted(Counter(kind(m, p) for m, p, _, _ in log).items())),
        sum(n for _, _, _, n in log),
        seconds,
        note,
    )
    return cost, proc.stdout.strip()


def run(nodes: int, files: int, size_mib: int) -> dict[str, object]:
    modelctl = [sys.executable, "-m", "modelctl"]
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        base = Path(tmp)
        content = make_repos(base / "hub", files, size_mib * MiB)
        app = base / "app"
        app.mkdir()
        (app / "modelctl.yaml").write_text(MANIFEST)
        costs: list[Cost] = []
        with reg.Registry(base / "registry") as registry, reg.Proxy(registry) as proxy:
            dest = f"oci://{proxy.address}/bench/models"
            with LocalHub(base / "hub") as hub:
                ci = machine_env(base, "ci", hub.url)
                quiet = {"check": True, "capture_output": True}
                subprocess.run([*modelctl, "sync", "-q"], cwd=app, env=ci, **quiet)
                for step in ("push (first)", "push (unchanged)"):
                    cost, _ = measure(step, proxy, [*modelctl, "push", f"{dest}:v1"], app, ci)
                    costs.append(cost)
                lock_v1 = (app / "modelctl.lock").read_bytes()
                # One file changes upstream: CI re-locks, syncs and pushes v2.
                (base / "hub/bench/llm/main/tokenizer.json").write_bytes(b"[]" * 20_000)
                subprocess.run([*modelctl, "lock", "-U"], cwd=app, env=ci, **quiet)
                subprocess.run([*modelctl, "sync", "-q"], cwd=app, env=ci, **quiet)
                cost, _ = measure("push (one file changed)", proxy,
                                  [*modelctl, "push", f"{dest}:v2"], app, ci)  # fmt: skip
                costs.append(cost)
                lock_v2 = (app / "modelctl.lock").read_bytes()
            # The Hub is gone from here on: nodes only see the registry.
            for i in range(nodes):
                node_app = base / f"app-{i}"
                node_app.mkdir()
                (node_app / "modelctl.lock").write_bytes(lock_v1)
                env = machine_env(base, f"node{i}", "http://127.0.0.1:9")
                sync = [*modelctl, "sync", "--frozen", "-q", "--from"]
                for step in ("cold sync", "warm sync"):
                    cost, _ = measure(f"node {i}: {step}", proxy, [*sync, f"{dest}:v1"],
                                      node_app, env)  # fmt: skip
                    costs.append(cost)
                (node_app / "modelctl.lock").write_bytes(lock_v2)
                cost, _ = measure(f"node {i}: one-file update", proxy, [*sync, f"{dest}:v2"],
                                  node_app, env)  # fmt: skip
                costs.append(cost)
    cold = next(c for c in costs if c.step.endswith("cold sync"))
    warm = next(c for c in costs if c.step.endswith("warm sync"))
    update = next(c for c in costs if c.step.endswith("one-file update"))
    return {
        "nodes": nodes,
        "locked_bytes": content,
        "per_node": {
            "cold": {"requests": cold.requests, "body_bytes": cold.body_bytes},
            "warm": {"requests": warm.requests, "body_bytes": warm.body_bytes},
            "one_file_update": {"requests": update.requests, "body_bytes": update.body_bytes},
        },
        "steps": [asdict(c) for c in costs],
    }


def report(result: dict[str, object]) -> None:
    steps = result["steps"]
    assert isinstance(steps, list)
    print(f"{'step':<28} {'requests':>8} {'body bytes':>13} {'seconds':>8}  kinds")
    for s in steps:
        kinds = ", ".join(f"{k} x{v}" for k, v in s["by_kind"].items())
        print(f"{s['step']:<28} {s['requests']:>8} {s['body_bytes']:>13,} {s['seconds']:>8.2f}  "
              f"{kinds}")  # fmt: skip
        if s["note"]:
            print(f"{'':<28} {s['note']}")
    per = result["per_node"]
    assert isinstance(per, dict)
    print()
    print(f"locked content: {result['locked_bytes']:,} bytes")
    for name, c in per.items():
        print(f"per node, {name}: {c['requests']} requests, {c['body_bytes']:,} body bytes")
    print("N nodes: N x the per-node figures at the registry (or at a pull-through cache / P2P")
    print("layer in front of it, which turns them into one fetch per blob per cache).")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_registry", description=__doc__)
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--files", type=int, default=2, help="safetensors shards (plus one gguf)")
    p.add_argument("--size-mib", type=int, default=32, help="size of each large file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    if shutil.which(reg.REGISTRY_BIN) is None:
        raise SystemExit("needs docker-registry (apt-get install docker-registry)")
    result = run(args.nodes, args.files, args.size_mib)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
