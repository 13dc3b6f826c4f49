"""modelctl against its rivals as users run them, in one table (``just bench``).

Transfer: Debian's nginx serves the same bytes at ``/<repo>/resolve/<commit>/<path>``
(what ``modelctl sync`` and ``hf_hub_download`` ask for), in two scenarios:

- **capped**: nginx ``limit_rate`` per connection (default 40 MB/s, about what one
  connection gets from the Hub's CDN) with a 128 KiB socket send buffer, so that no
  answer's tail escapes the cap (with the autotuned buffer, the last ~2 MiB of every answer
  came at loopback speed, which favoured clients making many range requests); loopback
  round trips;
- **uncapped**: loopback, as fast as the cores go.

Each runs one large file and a multi-file plan (4 large + 3 small files). The clients,
each a fresh process started as a user would start it, into an empty folder:

- ``modelctl sync`` (the CLI, defaults: ``-x 8`` per file, every byte verified);
- ``aria2c -x8 -s8 -jJ``, J = the number of files (Debian ``aria2``, no verification);
- ``curl``: one process per file, all at once (no verification);
- ``curl + sha256sum``: the same, each followed by ``sha256sum`` of its file: what a
  verified download costs with the standard tools (the CPU reference);
- ``hf_hub_download`` on a pool of 8 threads (as ``snapshot_download`` runs it).

Per client: the median wall time of the rounds (the order rotates every round), MB/s,
CPU seconds (user + sys of the process and its children, from ``wait4``) per GB, and
peak RSS (``wait4``'s, which counts the forked benchmark process before ``exec``: read
the smallest values as "at most"). The load average is printed per scenario: above 1,
treat throughput with care; CPU seconds per GB are the steadier measure on a shared
machine.

Start-up: a warm ``modelctl sync --frozen --offline`` of an 8-file lock, and
``import modelctl.runtime`` + ``open_lock()`` + every path, each against
``python -c pass`` (fresh interpreters, medians).

Scale (``benchmarks.bench_scale``): repos of many small files on the bundled Hub server:
lock, plan, cold sync, warm status and verify, against ``snapshot_download``.

Run ``python -m benchmarks.bench_wan [--rounds 3] [--rate-mb 40] [--quick]
[--only capped|uncapped|startup|scale]``.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench_sync import REPO, ROOT_DIR, env_for, make_repo, start_hub

MiB = 1024 * 1024
POOL = 8  # hf_hub_download threads, as snapshot_download's max_workers

HF_POOL_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from concurrent.futures import ThreadPoolExecutor
    import huggingface_hub as hf
    repo, commit, endpoint, cache, files, pool = sys.argv[1:7]
    with ThreadPoolExecutor(int(pool)) as ex:
        list(ex.map(lambda f: hf.hf_hub_download(
            repo, f, revision=commit, cache_dir=cache, endpoint=endpoint), json.loads(files)))
    """
)

RUNTIME_SCRIPT = textwrap.dedent(
    """
    import sys
    from modelctl.runtime import open_lock
    models = open_lock(sys.argv[1])
    paths = [p for a in models.assets() for p in models.files(a).values()]
    assert len(paths) == 8, paths
    """
)


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float  # user + sys of the process and the children it waited for
    rss_kib: int


def run(cmd: Sequence[str], env: dict[str, str] | None = None, cwd: Path = ROOT_DIR) -> Run:
    """Start ``cmd``, wait for it with ``wait4``: its wall time, CPU time and peak RSS."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd), env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {shlex.join(cmd)}\n{err}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def modelctl_cmd(*args: str, python: str = sys.executable) -> list[str]:
    """The CLI as a user runs it (the venv's console script, else ``python -m``)."""
    script = Path(python).with_name("modelctl")
    return [str(script), *args] if script.exists() else [python, "-m", "modelctl", *args]


# --------------------------------------------------------------------------- nginx


def start_nginx(
    www: Path, work: Path, rate_mb: int | None, commit: str
) -> tuple[subprocess.Popen[bytes], str]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx is needed: apt-get install nginx-light")
    port = _free_port()
    rate = f"limit_rate {rate_mb}m;" if rate_mb else ""
    # limit_rate paces what nginx hands to the socket, and the socket's send buffer (a few
    # MiB on loopback, autotuned) then drains at full speed: each answer's last few MiB
    # would arrive uncapped, a gift to clients that make many range requests. A 128 KiB
    # send buffer makes the cap a per-connection rate, as a CDN's is.
    sndbuf = " sndbuf=128k" if rate_mb else ""
    conf = work / f"nginx-{port}.conf"
    conf.write_text(
        textwrap.dedent(
            f"""
            user root;
            worker_processes 2;
            daemon off;
            pid {work}/nginx-{port}.pid;
            error_log {work}/nginx-{port}.err;
            events {{ worker_connections 1024; }}
            http {{
                access_log off;
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
                    listen 127.0.0.1:{port}{sndbuf};
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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- rounds


def rotated(
    rounds: int, clients: dict[str, Callable[[Path], Run]], work: Path
) -> dict[str, list[Run]]:
    """Every run of every client, the order rotated each round; each run gets an empty
    folder, and the dirty pages of the previous run are flushed first (``os.sync``)."""
    runs: dict[str, list[Run]] = {label: [] for label in clients}
    order = list(clients)
    for i in range(rounds):
        for label in order[i % len(order) :] + order[: i % len(order)]:
            dest = work / f"{label.replace(' ', '-').replace('/', '_')}-{i}"
            dest.mkdir(parents=True)
            os.sync()
            runs[label].append(clients[label](dest))
            shutil.rmtree(dest, ignore_errors=True)
    return runs


@dataclass(frozen=True)
class Row:
    kind: str  # c1, c4 (capped), u1, u4 (uncapped)
    scenario: str
    client: str
    mb_s: float
    cpu_s_gb: float
    rss_mib: float
    load: float


def rows_of(
    kind: str, scenario: str, total: int, runs: dict[str, list[Run]], load: float
) -> list[Row]:
    out = []
    for client, rs in runs.items():
        wall = statistics.median(r.wall_s for r in rs)
        cpu = statistics.median(r.cpu_s for r in rs)
        rss = max(r.rss_kib for r in rs) / 1024
        out.append(Row(kind, scenario, client, total / wall / 1e6, cpu / (total / 1e9), rss, load))
    return out


# --------------------------------------------------------------------------- transfer


def transfer_scenario(
    work: Path, label: str, files: int, size_mib: int, small: bool, rate_mb: int | None,
    rounds: int,
) -> list[Row]:  # fmt: skip
    base = work / label
    sizes = make_repo(base / "root", files, size_mib * MiB, small=small)
    total = sum(sizes.values())
    lock_path = lock_repo(base, sizes)
    from modelctl.lock import lockfile

    commit = next(iter(lockfile.load(lock_path).files())).commit
    www = base / "www" / REPO / "resolve" / commit
    www.mkdir(parents=True)
    for name in sizes:
        os.link(base / "root" / REPO / "main" / name, www / name)
    nginx, endpoint = start_nginx(base / "www", base, rate_mb, commit)
    jobs = len(sizes)
    try:
        urls = {n: f"{endpoint}/{REPO}/resolve/{commit}/{n}" for n in sorted(sizes)}
        # The page cache holds every file for every client.
        run(sh(curls(urls, base / "warmup", verify=False)))
        shutil.rmtree(base / "warmup")

        def sync(d: Path) -> Run:
            cmd = modelctl_cmd("sync", "--frozen", "-q", "--lockfile", str(lock_path))
            return run(cmd, env_for(endpoint, d))

        clients: dict[str, Callable[[Path], Run]] = {
            "modelctl sync": sync,
            f"aria2c -x8 -s8 -j{jobs}": lambda d: run(aria2c(urls, d, jobs)),
            f"curl x {jobs} at once": lambda d: run(sh(curls(urls, d, verify=False))),
            "curl + sha256sum": lambda d: run(sh(curls(urls, d, verify=True))),
            f"hf_hub_download, pool of {POOL}": lambda d: run(
                hf_pool(commit, endpoint, d, sorted(sizes)), env_for(endpoint, d)
            ),
        }
        load = os.getloadavg()[0]
        runs = rotated(rounds, clients, base)
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
    what = f"{files} x {size_mib} MiB" + (" + 3 small" if small else "")
    cap = f"{rate_mb} MB/s per conn" if rate_mb else "uncapped"
    return rows_of(label, f"{cap}, {what}", total, runs, load)


def hf_pool(commit: str, endpoint: str, dest: Path, files: list[str]) -> list[str]:
    args = [REPO, commit, endpoint, str(dest / "hub"), json.dumps(files), str(POOL)]
    return [sys.executable, "-c", HF_POOL_SCRIPT, *args]


def lock_repo(base: Path, sizes: dict[str, int]) -> Path:
    """Lock the repo's files against the bundled Hub server; returns the lockfile."""
    hub, hub_url = start_hub(base / "root")
    try:
        manifest = base / "modelctl.yaml"
        manifest.write_text(
            f"assets:\n  bench:\n    repo: {REPO}\n    files: {json.dumps(sorted(sizes))}\n"
        )
        run(modelctl_cmd("-q", "lock", "-m", str(manifest)), env_for(hub_url, base / "hf-lock"))
    finally:
        hub.terminate()
        hub.wait(timeout=10)
    return manifest.with_suffix(".lock")


def aria2c(urls: dict[str, str], dest: Path, jobs: int) -> list[str]:
    listing = dest / "urls.txt"
    listing.write_text("".join(f"{u}\n  out={n.replace('/', '_')}\n" for n, u in urls.items()))
    return [
        "aria2c", "-q", "-x8", "-s8", "-j", str(jobs), "--file-allocation=none",
        "--allow-overwrite=true", "--auto-file-renaming=false", "-d", str(dest), "-i",
        str(listing),
    ]  # fmt: skip


def curls(urls: dict[str, str], dest: Path, verify: bool) -> str:
    """A shell line: one curl per file, all at once (each then sha256sum, if ``verify``);
    fails if any of them fails."""
    dest.mkdir(parents=True, exist_ok=True)
    jobs = []
    for name, url in urls.items():
        out = shlex.quote(str(dest / name.replace("/", "_")))
        job = f"curl -s -f -o {out} {shlex.quote(url)}"
        if verify:
            job = f"{{ {job} && sha256sum {out} >/dev/null; }}"
        jobs.append(f'{job} & pids="$pids $!";')
    return (
        'pids=""; ' + " ".join(jobs) + ' s=0; for p in $pids; do wait "$p" || s=1; done; exit "$s"'
    )


# --------------------------------------------------------------------------- start-up


def startup_scenario(
    work: Path, rounds: int, python: str | None = None
) -> list[tuple[str, float, float]]:
    """(what, ms, ratio to python -c pass) rows. ``python``: measure that interpreter and
    the modelctl installed beside it (e.g. from a wheel), not this source tree."""
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
            run(modelctl_cmd(*cmd), env)
    finally:
        hub.terminate()
        hub.wait(timeout=10)
    lock_path = str(manifest.with_suffix(".lock"))
    env = {**env, "HF_HUB_OFFLINE": "1"}
    exe = python or sys.executable
    if python is not None:
        env.pop("PYTHONPATH", None)  # that interpreter's own modelctl, not this tree's
    runs = {
        "python -c pass": [exe, "-c", "pass"],
        "sync --frozen --offline (8 files, warm)": modelctl_cmd(
            "sync", "--frozen", "--offline", "-q", "--lockfile", lock_path, python=exe
        ),
        "runtime: import + open_lock + paths": [exe, "-c", RUNTIME_SCRIPT, lock_path],
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for k, cmd in runs.items():
            times[k].append(run(cmd, env, cwd=base).wall_s)
    med = {k: statistics.median(v) for k, v in times.items()}
    floor = med["python -c pass"]
    return [(k, v * 1000, v / floor) for k, v in med.items()]


# --------------------------------------------------------------------------- report


# The goals: modelctl's throughput at least this times the rival's.
GOALS = {"c1": ("aria2c", 1.0), "c4": ("aria2c", 1.0), "u1": ("curl x", 0.9), "u4": ("curl x", 0.8)}
CPU_GOAL = 1.5  # modelctl's CPU s/GB at most this times curl + sha256sum's
STARTUP_GOALS = {"sync --frozen": 4.0, "runtime:": 2.5}


def report(rows: list[Row], startup: list[tuple[str, float, float]], argv: list[str]) -> list[str]:
    lines = [
        f"| {'scenario':<38} | {'client':<28} | {'MB/s':>6} | {'modelctl is':>11} "
        f"| {'CPU s/GB':>8} | {'peak RSS':>8} | {'load':>4} |",
        f"|{'-' * 40}|{'-' * 30}|{'-' * 8}|{'-' * 13}|{'-' * 10}|{'-' * 10}|{'-' * 6}|",
    ]
    mine = {r.scenario: r for r in rows if r.client == "modelctl sync"}
    for r in rows:
        rel = "" if r.client == "modelctl sync" else f"{mine[r.scenario].mb_s / r.mb_s:.2f}x"
        lines.append(
            f"| {r.scenario:<38} | {r.client:<28} | {r.mb_s:>6.0f} | {rel:>11} "
            f"| {r.cpu_s_gb:>8.2f} | {r.rss_mib:>4.0f} MiB | {r.load:>4.1f} |"
        )
    for what, ms, ratio in startup:
        rel = "" if what == "python -c pass" else f"{ratio:.1f}x pass"
        lines.append(f"| {'start-up':<38} | {what:<28} | {ms:>3.0f} ms | {rel:>11} | | | |")
    lines.append("")
    lines += goal_lines(rows, startup)
    lines.append("")
    lines.append(f"reproduce: just bench {shlex.join(argv)}".rstrip())
    lines.append(f"       or: python -m benchmarks.bench_wan {shlex.join(argv)}".rstrip())
    return lines


def goal_lines(rows: list[Row], startup: list[tuple[str, float, float]]) -> list[str]:
    out = []
    for m in (r for r in rows if r.client == "modelctl sync"):
        peers = [r for r in rows if r.kind == m.kind]
        rival, goal = GOALS[m.kind]
        other = next(r for r in peers if r.client.startswith(rival))
        ratio = m.mb_s / other.mb_s
        out.append(
            f"goal {m.scenario}: >= {goal}x {other.client}: {ratio:.2f}x "
            f"({'met' if ratio >= goal else 'NOT met'})"
        )
        ref = next(r for r in peers if r.client == "curl + sha256sum")
        cpu = m.cpu_s_gb / ref.cpu_s_gb
        out.append(
            f"goal {m.scenario}: CPU <= {CPU_GOAL}x curl + sha256sum: {cpu:.2f}x "
            f"({'met' if cpu <= CPU_GOAL else 'NOT met'})"
        )
    for what, _, ratio in startup:
        for prefix, goal in STARTUP_GOALS.items():
            if what.startswith(prefix):
                ok = "met" if ratio <= goal else "NOT met"
                out.append(f"goal start-up {what}: <= {goal}x python -c pass: {ratio:.1f}x ({ok})")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_wan", description=__doc__.splitlines()[0]
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds per scenario (default 3)")
    p.add_argument("--rate-mb", type=int, default=40, help="per-connection cap, MB/s")
    p.add_argument("--quick", action="store_true", help="small files, one round: a smoke run")
    p.add_argument("--only", choices=["capped", "uncapped", "startup", "scale"], action="append")
    p.add_argument(
        "--python",
        help="start-up only: measure this interpreter and the modelctl installed beside it "
        "(e.g. a venv with modelctl from a wheel) instead of this source tree",
    )
    args = p.parse_args(argv)
    for tool in ("curl", "aria2c", "sha256sum"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed: apt-get install curl aria2 nginx-light")
    only = set(args.only or ["capped", "uncapped", "startup", "scale"])
    rounds = 1 if args.quick else args.rounds
    big, multi, fast = (32, 8, 64) if args.quick else (256, 64, 512)
    began = time.monotonic()
    # modelctl's bytecode, as pip writes it when it installs a wheel: from a source tree
    # (editable install) with PYTHONDONTWRITEBYTECODE set, every start would compile it.
    compileall.compile_dir(ROOT_DIR / "modelctl", quiet=1)
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs", flush=True)
    work = Path(tempfile.mkdtemp(prefix="modelctl-wan-"))
    rows: list[Row] = []
    startup: list[tuple[str, float, float]] = []
    scale: list[str] = []
    try:
        if "capped" in only:
            rows += transfer_scenario(work, "c1", 1, big, False, args.rate_mb, rounds)
            rows += transfer_scenario(work, "c4", 4, multi, True, args.rate_mb, rounds)
        if "uncapped" in only:
            rows += transfer_scenario(work, "u1", 1, fast, False, None, rounds)
            rows += transfer_scenario(work, "u4", 4, fast // 4, True, None, rounds)
        if "startup" in only:
            startup = startup_scenario(work, 3 if args.quick else max(rounds * 4, 9), args.python)
        if "scale" in only:
            from benchmarks import bench_scale

            scale = bench_scale.table(work / "scale", quick=args.quick)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nmedians of {rounds} rotated round(s); load average at end "
          f"{os.getloadavg()[0]:.2f}; took {time.monotonic() - began:.0f} s\n")  # fmt: skip
    print("\n".join(report(rows, startup, argv)))
    if scale:
        print("\n" + "\n".join(scale))
    return 0


if __name__ == "__main__":
    sys.exit(main())
