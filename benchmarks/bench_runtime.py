"""How long the runtime loader takes to hand out the paths of a 10-file lock.

Compared with huggingface_hub's own cache lookup, ``hf_hub_download(...,
local_files_only=True)``, for the same 10 files in the same HF cache. Run:
``python -m benchmarks.bench_runtime`` (``just bench`` runs it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "hub"
        for i in range(args.files):
            repo = root / "bench" / f"repo{i % 3}" / "main"
            repo.mkdir(parents=True, exist_ok=True)
            (repo / f"file{i}.bin").write_bytes(os.urandom(64 * 1024 + i))
        manifest = tmp / "modelctl.yaml"
        manifest.write_text(
            "assets:\n"
            + "".join(f"  r{j}:\n    repo: bench/repo{j}\n    files: ['*.bin']\n" for j in range(3))
        )
        env = {**os.environ, "HF_HOME": str(tmp / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
        env.pop("HF_HUB_OFFLINE", None)
        from modelctl.testing.hub import LocalHub

        with LocalHub(root) as hub:
            env["HF_ENDPOINT"] = hub.url
            for cmd in ("lock", "sync"):
                subprocess.run(
                    [sys.executable, "-m", "modelctl", cmd, "-m", str(manifest), "-q"]
                    if cmd == "sync"
                    else [sys.executable, "-m", "modelctl", cmd, "-m", str(manifest)],
                    env=env,
                    check=True,
                    capture_output=True,
                )
        cache = tmp / "hf" / "hub"
        lock_path = manifest.with_suffix(".lock")

        from huggingface_hub import hf_hub_download

        from modelctl.runtime import open_lock

        refs = list(open_lock(lock_path, cache_dir=cache, verify="none").lock.files())
        assert len(refs) == args.files, len(refs)

        def modelctl_fast() -> None:
            models = open_lock(lock_path, cache_dir=cache, verify="fast")
            for asset in models.assets():
                models.files(asset)

        def modelctl_full() -> None:
            models = open_lock(lock_path, cache_dir=cache, verify="full")
            for asset in models.assets():
                models.files(asset)

        def hf_local() -> None:
            for r in refs:
                hf_hub_download(
                    r.repo_id, r.path, revision=r.commit, cache_dir=cache, local_files_only=True
                )

        results = {
            "modelctl open_lock + paths, verify=fast": timed(modelctl_fast, args.repeat),
            "hf_hub_download(local_files_only=True) x N": timed(hf_local, args.repeat),
            "modelctl open_lock + paths, verify=full": timed(
                modelctl_full, max(3, args.repeat // 10)
            ),
        }
    print(f"resolving the paths of a {args.files}-file lock (median of runs, ms):")
    for name, times in results.items():
        print(
            f"  {name:45} {statistics.median(times) * 1000:8.2f} ms   (min {min(times) * 1000:.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
