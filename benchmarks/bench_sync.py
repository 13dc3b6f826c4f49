"""Cold-sync throughput: modelctl sync vs huggingface_hub.snapshot_download vs curl.

Everything runs against one LocalHub subprocess on loopback serving the same files:
N large random LFS files plus a few small regular files. Each client gets a fresh,
empty destination for each round; the server's files are read once before timing so all
clients are served from the page cache alike.

- ``modelctl``: ``modelctl.sync.sync`` (stream, sha256/gitsha1 + blake3 while writing,
  verify, rename, link) timed inside a fresh interpreter, imports excluded;
- ``snapshot_download``: the same files (``allow_patterns``) at the locked commit, timed
  the same way;
- ``curl seq`` / ``curl par``: ``curl -s -o FILE URL`` one file after the other, and all
  files at once (one curl process per file); no hashing at all.

Every client runs once per round, in turn; the median of the rounds is reported (this
2-core box is noisy), with the fastest and slowest run beside it.

Run ``python -m benchmarks.bench_sync [--files 4 --size-mib 128 --rounds 5]``;
``--single`` is one 512 MiB file and nothing else (one transfer, no parallelism);
``--baseline DIR`` adds ``modelctl baseline``: the same sync run from another source tree
(for instance a copy of the previous ``modelctl/``), so two versions alternate in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

MiB = 1024 * 1024
REPO = "bench/model"
SMALL_FILES = {
    "config.json": b'{"hidden_size": 64}\n',
    "tokenizer.json": b"{}" * 500,
    "README.md": b"# bench\n",
}
ROOT_DIR = Path(__file__).resolve().parents[1]

MODELCTL_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from modelctl.lock import lockfile
    from modelctl.settings import from_env
    from modelctl.store.layout import HfCacheStore
    from modelctl.sync import sync
    from pathlib import Path
    lock = lockfile.load(Path(sys.argv[1]))
    settings = from_env(os.environ)
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else None
    # Which tree runs matters with --baseline: fail loudly if PYTHONPATH did not win.
    assert Path(sys.modules["modelctl"].__file__).resolve().parents[1] == Path(
        os.environ["PYTHONPATH"]
    ).resolve(), sys.modules["modelctl"].__file__
    try:  # since sync takes a Source; --baseline may race an older tree
        from modelctl.hub.source import HubSource
        source = HubSource(settings, jobs=jobs)
    except ImportError:
        source = settings
    t = time.perf_counter()
    sync(lock, HfCacheStore(settings.hf_cache), source, jobs=jobs)
    print(time.perf_counter() - t)
    """
)

SNAPSHOT_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import huggingface_hub as hf
    repo, commit, endpoint, cache, files = sys.argv[1:6]
    t = time.perf_counter()
    hf.snapshot_download(repo, revision=commit, cache_dir=cache, endpoint=endpoint,
                         allow_patterns=json.loads(files))
    print(time.perf_counter() - t)
    """
)


def make_repo(root: Path, files: int, size: int, small: bool = True) -> dict[str, int]:
    base = root / REPO / "main"
    base.mkdir(parents=True)
    (base / ".gitattributes").write_text("*.bin filter=lfs diff=lfs merge=lfs -text\n")
    sizes: dict[str, int] = {}
    for i in range(files):
        name = f"model-{i:05d}-of-{files:05d}.bin"
        with (base / name).open("wb") as f:
            left = size
            while left:
                n = min(left, 16 * MiB)
                f.write(os.urandom(n))
                left -= n
        sizes[name] = size
    for name, data in SMALL_FILES.items() if small else ():
        (base / name).write_bytes(data)
        sizes[name] = len(data)
    return sizes


def start_hub(root: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelctl.testing.hub", "--root", str(root), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT_DIR,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"the local hub did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[1].strip()


def env_for(endpoint: str, hf_home: Path, source: Path = ROOT_DIR) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_XET="1",
        PYTHONPATH=str(source),
    )
    return env


def timed_script(script: str, args: list[str], env: dict[str, str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        # `-c` puts the working directory first on sys.path: it picks the source tree.
        cwd=env["PYTHONPATH"],
    )
    if out.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{out.stderr}")
    return float(out.stdout.strip().splitlines()[-1])


def timed_curl(urls: dict[str, str], dest: Path, parallel: bool) -> float:
    dest.mkdir(parents=True)
    commands = [
        ["curl", "-s", "-f", "-o", str(dest / name.replace("/", "_")), url]
        for name, url in urls.items()
    ]
    t = time.perf_counter()
    if parallel:
        procs = [subprocess.Popen(c) for c in commands]
        codes = [p.wait() for p in procs]
    else:
        codes = [subprocess.run(c, check=False).returncode for c in commands]
    elapsed = time.perf_counter() - t
    if any(codes):
        raise SystemExit(f"curl failed: {codes}")
    return elapsed


def interleaved(
    rounds: int, clients: dict[str, Callable[[Path], float]], work: Path
) -> dict[str, list[float]]:
    """Every time of every client; clients take turns in every round, so drift hits all alike.

    Dirty pages of the previous run are flushed (os.sync) before each timed run: otherwise
    their write-back competes with whichever client runs next.
    """
    times: dict[str, list[float]] = {label: [] for label in clients}
    order = list(clients)
    for i in range(rounds):
        # The order rotates: measured here, whichever client runs first in a round is
        # slower (the previous round's clean-up still weighs), which would favour one.
        turn = order[i % len(order) :] + order[: i % len(order)]
        for label in turn:
            run = clients[label]
            dest = work / f"{label.replace(' ', '-')}-{i}"
            os.sync()
            times[label].append(run(dest))
            shutil.rmtree(dest, ignore_errors=True)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_sync", description=__doc__.splitlines()[0]
    )
    p.add_argument("--files", type=int, default=4, help="large LFS files (default 4)")
    p.add_argument(
        "--size-mib", type=int, default=128, help="size of each large file (default 128)"
    )
    p.add_argument(
        "--single", action="store_true", help="one 512 MiB file only (overrides --files/--size-mib)"
    )
    p.add_argument("--rounds", type=int, default=5, help="runs per client; the median is shown")
    p.add_argument(
        "--baseline", type=Path, default=None, help="also run modelctl from this source tree"
    )
    p.add_argument("--jobs", type=int, default=None, help="modelctl --jobs (default: its own)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args(argv)
    if args.single:
        args.files, args.size_mib = 1, 512
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed for the comparison")

    work = Path(tempfile.mkdtemp(prefix="modelctl-bench-"))
    hub = None
    try:
        small = 0 if args.single else len(SMALL_FILES)
        print(f"creating {args.files} x {args.size_mib} MiB + {small} small files in {work}")
        sizes = make_repo(work / "root", args.files, args.size_mib * MiB, small=bool(small))
        total = sum(sizes.values())
        hub, endpoint = start_hub(work / "root")

        project = work / "project"
        project.mkdir()
        manifest = project / "modelctl.yaml"
        manifest.write_text(
            "assets:\n  bench:\n    repo: "
            + REPO
            + "\n    files: "
            + json.dumps(sorted(sizes))
            + "\n"
        )
        env = env_for(endpoint, work / "hf-lock")
        subprocess.run(
            [sys.executable, "-m", "modelctl", "lock", "-m", str(manifest)],
            env=env,
            check=True,
            capture_output=True,
            cwd=ROOT_DIR,
        )
        lock_path = manifest.with_suffix(".lock")
        from modelctl.lock import lockfile

        lock = lockfile.load(lock_path)
        commit = next(iter(lock.files())).commit
        urls = {r.path: f"{endpoint}/{REPO}/resolve/{commit}/{r.path}" for r in lock.files()}
        # Read every file once through the server: all clients then start from a warm page cache.
        timed_curl(urls, work / "warmup", parallel=True)
        shutil.rmtree(work / "warmup")

        jobs = [] if args.jobs is None else [str(args.jobs)]
        clients: dict[str, Callable[[Path], float]] = {
            "modelctl sync": lambda d: timed_script(
                MODELCTL_SCRIPT, [str(lock_path), *jobs], env_for(endpoint, d)
            ),
        }
        if args.baseline is not None:
            base = args.baseline.resolve()
            clients["modelctl baseline"] = lambda d: timed_script(
                MODELCTL_SCRIPT, [str(lock_path), *jobs], env_for(endpoint, d, base)
            )
        times = interleaved(
            args.rounds,
            {
                **clients,
                "snapshot_download": lambda d: timed_script(
                    SNAPSHOT_SCRIPT,
                    [REPO, commit, endpoint, str(d / "hub"), json.dumps(sorted(sizes))],
                    env_for(endpoint, d),
                ),
                "curl seq": lambda d: timed_curl(urls, d, False),
                "curl par": lambda d: timed_curl(urls, d, True),
            },
            work,
        )
        results = {name: statistics.median(t) for name, t in times.items()}
        print(
            f"\n{len(sizes)} files, {total / MiB:.0f} MiB, median of {args.rounds}, "
            f"{os.cpu_count()} CPUs"
        )
        print(f"{'client':<20}{'seconds':>10}{'MB/s':>10}{'MB/s range':>16}")
        for name, secs in results.items():
            lo, hi = total / max(times[name]) / 1e6, total / min(times[name]) / 1e6
            print(f"{name:<20}{secs:>10.2f}{total / secs / 1e6:>10.0f}{f'{lo:.0f}-{hi:.0f}':>16}")
        mine = results["modelctl sync"]
        print()
        others = ["snapshot_download", "curl seq", "curl par"]
        if args.baseline is not None:
            others.insert(0, "modelctl baseline")
        for other in others:
            print(f"modelctl speed / {other}: {results[other] / mine:.2f}x")
        return 0
    finally:
        if hub is not None:
            hub.terminate()
            hub.wait(timeout=10)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
