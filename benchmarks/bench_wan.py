"""WAN-grade transfer and start-up cost, in one table (``just bench``).

Transfer: Debian's nginx serves the same bytes at ``/<repo>/resolve/<commit>/<path>``
(what ``modelctl sync`` and ``hf_hub_download`` ask for), in two scenarios:

- **capped**: nginx ``limit_rate`` per connection (default 40 MB/s, about what one
  connection gets from the Hub's CDN); no latency is added (loopback round trips);
- **uncapped**: loopback, as fast as the two cores go.

Each scenario runs one large file and a multi-file plan (4 large + 2 small files). The
clients race in one run, the order rotated every round, median reported:
``modelctl sync`` (default: 8 connections, every byte verified), ``aria2c -x8 -s8``
(Debian ``aria2``, no verification), ``curl`` (one connection per file, in parallel for
a plan) and ``hf_hub_download`` (one call per file, in a loop).

Start-up: a warm ``modelctl sync --frozen --offline`` of an 8-file lock, and
``import modelctl.runtime`` + ``open_lock()`` + every path, each against
``python -c pass`` (fresh interpreters, medians).

Run ``python -m benchmarks.bench_wan [--rounds 3] [--rate-mb 40] [--quick]``.
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

from benchmarks.bench_sync import (
    MODELCTL_SCRIPT,
    REPO,
    ROOT_DIR,
    SMALL_FILES,
    env_for,
    interleaved,
    make_repo,
    start_hub,
    timed_script,
)

MiB = 1024 * 1024

HF_LOOP_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import huggingface_hub as hf
    repo, commit, endpoint, cache, files = sys.argv[1:6]
    t = time.perf_counter()
    for f in json.loads(files):
        hf.hf_hub_download(repo, f, revision=commit, cache_dir=cache, endpoint=endpoint)
    print(time.perf_counter() - t)
    """
)

# modelctl sync as bench_sync times it, plus its peak RSS (KiB) on stderr.
SYNC_RSS_SCRIPT = MODELCTL_SCRIPT + textwrap.dedent(
    """
    import resource
    print("maxrss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
    """
)
PEAK_RSS_KIB: dict[str, int] = {}

RUNTIME_SCRIPT = textwrap.dedent(
    """
    import sys
    from modelctl.runtime import open_lock
    models = open_lock(sys.argv[1])
    paths = [p for a in models.assets() for p in models.files(a).values()]
    assert len(paths) == 8, paths
    """
)


# --------------------------------------------------------------------------- servers


def start_nginx(
    www: Path, work: Path, rate_mb: int | None, commit: str
) -> tuple[subprocess.Popen[bytes], str]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is needed: apt-get install nginx-light")
    port = _free_port()
    rate = f"limit_rate {rate_mb}m;" if rate_mb else ""
    log_format = "log_format t '$msec $request_time $connection $status $http_range';"
    access_log = (
        f"{log_format} access_log {work}/access-{port}.log t;"
        if os.environ.get("BENCH_NGINX_LOG")
        else "access_log off;"
    )
    conf = work / f"nginx-{port}.conf"
    conf.write_text(
        textwrap.dedent(
            f"""
            user root;
            worker_processes 2;
            daemon off;
            pid {work}/nginx-{port}.pid;
            error_log {work}/nginx-{port}.err;
            events {{ worker_connections 256; }}
            http {{
                {access_log}
                sendfile on;
                tcp_nopush on;
                keepalive_requests 100000;
                client_body_temp_path {work}/nginx-tmp;
                proxy_temp_path {work}/nginx-tmp;
                fastcgi_temp_path {work}/nginx-tmp;
                uwsgi_temp_path {work}/nginx-tmp;
                scgi_temp_path {work}/nginx-tmp;
                types {{ }}
                default_type application/octet-stream;
                server {{
                    listen 127.0.0.1:{port};
                    root {www};
                    location / {{
                        {rate}
                        add_header X-Repo-Commit {commit};
                    }}
                }}
            }}
            """
        )
    )
    (work / "nginx-tmp").mkdir(exist_ok=True)
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(work)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    import socket

    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None:
                assert proc.stderr is not None
                raise SystemExit(f"nginx failed: {proc.stderr.read().decode()}") from None
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("nginx did not start")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- clients


def timed_sync(lock_path: Path, env: dict[str, str], scenario: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", SYNC_RSS_SCRIPT, str(lock_path)],
        env=env, capture_output=True, text=True, cwd=env["PYTHONPATH"],
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"modelctl sync failed:\n{out.stderr}")
    rss = max(int(line.split()[1]) for line in out.stderr.splitlines() if line.startswith("maxrss"))
    PEAK_RSS_KIB[scenario] = max(PEAK_RSS_KIB.get(scenario, 0), rss)
    return float(out.stdout.strip().splitlines()[-1])


def timed_aria2(urls: dict[str, str], dest: Path) -> float:
    dest.mkdir(parents=True)
    listing = dest / "urls.txt"
    listing.write_text("".join(f"{u}\n  out={n.replace('/', '_')}\n" for n, u in urls.items()))
    cmd = [
        "aria2c", "-q", "-x8", "-s8", "-j", str(len(urls)), "--max-overall-download-limit=0",
        "--file-allocation=none", "--allow-overwrite=true", "--auto-file-renaming=false",
        "-d", str(dest), "-i", str(listing),
    ]  # fmt: skip
    t = time.perf_counter()
    code = subprocess.run(cmd, check=False).returncode
    elapsed = time.perf_counter() - t
    if code:
        raise SystemExit(f"aria2c failed: {code}")
    return elapsed


def timed_curl(urls: dict[str, str], dest: Path) -> float:
    dest.mkdir(parents=True)
    cmds = [["curl", "-s", "-f", "-o", str(dest / n.replace("/", "_")), u] for n, u in urls.items()]
    t = time.perf_counter()
    procs = [subprocess.Popen(c) for c in cmds]
    codes = [p.wait() for p in procs]
    elapsed = time.perf_counter() - t
    if any(codes):
        raise SystemExit(f"curl failed: {codes}")
    return elapsed


# --------------------------------------------------------------------------- scenarios


def transfer_scenario(
    work: Path, label: str, files: int, size_mib: int, small: bool, rate_mb: int | None,
    rounds: int,
) -> list[tuple[str, str, float, float]]:  # fmt: skip
    """(scenario, client, MB/s, ratio modelctl/client) rows."""
    base = work / label
    sizes = make_repo(base / "root", files, size_mib * MiB, small=small)
    total = sum(sizes.values())
    hub, hub_url = start_hub(base / "root")
    try:
        manifest = base / "modelctl.yaml"
        manifest.write_text(
            f"assets:\n  bench:\n    repo: {REPO}\n    files: {json.dumps(sorted(sizes))}\n"
        )
        subprocess.run(
            [sys.executable, "-m", "modelctl", "lock", "-m", str(manifest)],
            env=env_for(hub_url, base / "hf-lock"), check=True, capture_output=True, cwd=ROOT_DIR,
        )  # fmt: skip
    finally:
        hub.terminate()
        hub.wait(timeout=10)
    lock_path = manifest.with_suffix(".lock")
    from modelctl.lock import lockfile

    lock = lockfile.load(lock_path)
    commit = next(iter(lock.files())).commit
    www = base / "www" / REPO / "resolve" / commit
    www.mkdir(parents=True)
    for name in sizes:
        os.link(base / "root" / REPO / "main" / name, www / name)
    nginx, endpoint = start_nginx(base / "www", base, rate_mb, commit)
    try:
        urls = {n: f"{endpoint}/{REPO}/resolve/{commit}/{n}" for n in sorted(sizes)}
        timed_curl(urls, base / "warmup")  # the page cache holds every file for every client
        shutil.rmtree(base / "warmup")
        clients: dict[str, Callable[[Path], float]] = {
            "modelctl sync": lambda d: timed_sync(lock_path, env_for(endpoint, d), label),
            "aria2c -x8 -s8": lambda d: timed_aria2(urls, d),
            "curl": lambda d: timed_curl(urls, d),
            "hf_hub_download": lambda d: timed_script(
                HF_LOOP_SCRIPT,
                [REPO, commit, endpoint, str(d / "hub"), json.dumps(sorted(sizes))],
                env_for(endpoint, d),
            ),
        }
        times = interleaved(rounds, clients, base)
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
    med = {k: statistics.median(v) for k, v in times.items()}
    mine = med["modelctl sync"]
    what = f"{files} x {size_mib} MiB" + (f" + {len(SMALL_FILES)} small" if small else "")
    cap = f"{rate_mb} MB/s per conn" if rate_mb else "uncapped"
    rows = [(f"{cap}, {what}", k, total / v / 1e6, v / mine) for k, v in med.items()]
    PEAK_RSS_KIB[f"{cap}, {what}"] = PEAK_RSS_KIB.pop(label)
    return rows


def startup_scenario(work: Path, rounds: int) -> list[tuple[str, float, float]]:
    """(what, ms, ratio to python -c pass) rows."""
    base = work / "startup"
    sizes = make_repo(base / "root", 5, 64 * 1024, small=True)
    assert len(sizes) == 8
    hub, hub_url = start_hub(base / "root")
    try:
        manifest = base / "modelctl.yaml"
        manifest.write_text(
            f"assets:\n  bench:\n    repo: {REPO}\n    files: {json.dumps(sorted(sizes))}\n"
        )
        env = env_for(hub_url, base / "hf")
        for cmd in (["lock", "-m", str(manifest)], ["sync", "-q", "-m", str(manifest)]):
            subprocess.run(
                [sys.executable, "-m", "modelctl", *cmd],
                env=env, check=True, capture_output=True, cwd=ROOT_DIR,
            )  # fmt: skip
    finally:
        hub.terminate()
        hub.wait(timeout=10)
    lock_path = str(manifest.with_suffix(".lock"))
    env = {**env, "HF_HUB_OFFLINE": "1"}
    runs = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "sync --frozen --offline (8 files, warm)": [
            sys.executable, "-m", "modelctl", "sync", "--frozen", "--offline", "-q",
            "--lockfile", lock_path,
        ],
        "runtime: import + open_lock + paths": [sys.executable, "-c", RUNTIME_SCRIPT, lock_path],
    }  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for k, cmd in runs.items():
            t = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=base)
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    floor = med["python -c pass"]
    return [(k, v * 1000, v / floor) for k, v in med.items()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_wan", description=__doc__.splitlines()[0]
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds per transfer scenario")
    p.add_argument("--rate-mb", type=int, default=40, help="per-connection cap, MB/s")
    p.add_argument("--quick", action="store_true", help="smaller files (a smoke run)")
    p.add_argument("--only", choices=["capped", "uncapped", "startup"], action="append")
    args = p.parse_args(argv)
    for tool in ("curl", "aria2c"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed: apt-get install curl aria2 nginx-light")
    only = set(args.only or ["capped", "uncapped", "startup"])
    big, multi, fast = (64, 16, 128) if args.quick else (256, 64, 512)
    work = Path(tempfile.mkdtemp(prefix="modelctl-wan-"))
    rows: list[tuple[str, str, float, float]] = []
    startup: list[tuple[str, float, float]] = []
    try:
        if "capped" in only:
            rows += transfer_scenario(work, "c1", 1, big, False, args.rate_mb, args.rounds)
            rows += transfer_scenario(work, "c4", 4, multi, True, args.rate_mb, args.rounds)
        if "uncapped" in only:
            rows += transfer_scenario(work, "u1", 1, fast, False, None, args.rounds)
            rows += transfer_scenario(work, "u4", 4, fast // 4, True, None, args.rounds)
        if "startup" in only:
            startup = startup_scenario(work, max(args.rounds * 4, 9))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nmedians of {args.rounds} rotated rounds, {os.cpu_count()} CPUs")
    print(f"| {'scenario':<40} | {'client':<36} | {'result':>10} | {'modelctl is':>12} |")
    print(f"|{'-' * 42}|{'-' * 38}|{'-' * 12}|{'-' * 14}|")
    for scenario, client, mbs, ratio in rows:
        rel = "" if client == "modelctl sync" else f"{ratio:.2f}x"
        print(f"| {scenario:<40} | {client:<36} | {mbs:>6.0f} MB/s | {rel:>12} |")
    for scenario, kib in PEAK_RSS_KIB.items():
        print(
            f"| {scenario:<40} | {'modelctl sync: peak RSS':<36} "
            f"| {kib / 1024:>6.0f} MiB | {'':>12} |"
        )
    for what, ms, ratio in startup:
        rel = "" if what == "python -c pass" else f"{ratio:.1f}x pass"
        print(f"| {'start-up':<40} | {what:<36} | {ms:>7.0f} ms | {rel:>12} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
