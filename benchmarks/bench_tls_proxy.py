"""Cold sync over HTTPS with a private CA, and through a CONNECT proxy: still the fast path?

One LocalHub subprocess serves one large LFS file over HTTPS (a test CA made with
openssl, trusted through ``SSL_CERT_FILE``); a ``tests.support.servers.proxy`` subprocess
tunnels ``CONNECT``. Each round times, in a fresh interpreter (imports excluded):

- ``https``: modelctl sync straight to the Hub (http.client + ssl);
- ``https + proxy``: the same through ``HTTPS_PROXY`` (a CONNECT tunnel, same transport);
- ``httpx2 + proxy``: the same sync forced onto huggingface_hub's httpx2 session, which is
  what modelctl used behind a proxy before (the comparison the issue names);
- ``curl https`` / ``curl https + proxy``: ``curl --cacert`` to a file, no hashing;
- with tinyproxy also plain HTTP (a second LocalHub): direct, and through the proxy with
  each transport (``HTTP_PROXY``: absolute-URI requests).

Run ``python -m benchmarks.bench_tls_proxy [--size-mib 256 --rounds 3]``. The proxy is a
Python process too: on 2 cores it competes with client and server for CPU, so its row
says what a proxy on the same machine costs, not what a remote one would. Where
``tinyproxy`` is installed (Debian package), the same rows run through it too (a proxy in
C: less of the CPU goes to the proxy).
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

from benchmarks.bench_sync import REPO, ROOT_DIR, MiB, interleaved, make_repo

SYNC_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from modelctl.lock import lockfile
    from modelctl.transfer.http import HttpxTransport, Timeouts
    from modelctl.hub.source import HubSource
    from modelctl.settings import from_env
    from modelctl.store.layout import HfCacheStore
    from modelctl.sync import sync
    lock = lockfile.load(Path(sys.argv[1]))
    settings = from_env(os.environ)
    import huggingface_hub as hf
    transport = HttpxTransport(hf.get_session()) if sys.argv[2] == "httpx" else None
    t = time.perf_counter()
    sync(lock, HfCacheStore(settings.hf_cache), HubSource(settings, transport=transport))
    print(time.perf_counter() - t)
    """
)


def serve(args: list[str], what: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", *args], stdout=subprocess.PIPE, text=True, cwd=ROOT_DIR
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"{what} did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[1].strip()


def start_tinyproxy(work: Path) -> tuple[subprocess.Popen[str], str] | None:
    exe = shutil.which("tinyproxy")
    if exe is None:
        return None
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = work / "tinyproxy.conf"
    # No ConnectPort line: CONNECT to any port (the Hub listens on a random one).
    conf.write_text(
        f"Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 600\nMaxClients 20\n"
        "LogLevel Error\n"
    )
    proc = subprocess.Popen([exe, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, text=True)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("tinyproxy did not start")


def base_env(
    endpoint: str, hf_home: Path, ca: Path, proxy: str | None, var: str = "HTTPS_PROXY"
) -> dict[str, str]:
    drop = ("HF_", "HUGGING", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(drop)}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_TELEMETRY="1",
        SSL_CERT_FILE=str(ca),
        PYTHONPATH=str(ROOT_DIR),
    )
    if proxy is not None:
        env[var] = proxy
    return env


def timed_sync(lock: Path, transport: str, env: dict[str, str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", SYNC_SCRIPT, str(lock), transport],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT_DIR,
    )
    if out.returncode != 0:
        raise SystemExit(f"sync failed:\n{out.stderr}")
    return float(out.stdout.strip().splitlines()[-1])


def timed_curl(url: str, dest: Path, ca: Path, proxy: str | None) -> float:
    dest.mkdir(parents=True)
    cmd = ["curl", "-s", "-f", "-L", "--cacert", str(ca), "-o", str(dest / "f"), url]
    if proxy is not None:
        cmd[1:1] = ["--proxy", proxy]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_tls_proxy", description=__doc__.splitlines()[0]
    )
    p.add_argument("--size-mib", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    from tests.support.servers.tls import make_test_ca

    work = Path(tempfile.mkdtemp(prefix="modelctl-bench-tls-"))
    procs: list[subprocess.Popen[str]] = []
    try:
        sizes = make_repo(work / "root", 1, args.size_mib * MiB, small=False)
        ca = make_test_ca(work / "ca")
        hub, endpoint = serve(
            ["modelctl.testing.hub", "--root", str(work / "root"), "--port", "0",
             "--tls-cert", str(ca.server_cert), "--tls-key", str(ca.server_key)],
            "the local hub",
        )  # fmt: skip
        procs.append(hub)
        plain, plain_url = serve(
            ["modelctl.testing.hub", "--root", str(work / "root"), "--port", "0"], "the hub"
        )
        procs.append(plain)
        proxy_proc, proxy = serve(["tests.support.servers.proxy"], "the proxy")
        procs.append(proxy_proc)
        manifest = work / "modelctl.yaml"
        manifest.write_text(
            f"assets:\n  b:\n    repo: {REPO}\n    files: {json.dumps(sorted(sizes))}\n"
        )
        env = base_env(endpoint, work / "hf-lock", ca.ca_cert, None)
        subprocess.run(
            [sys.executable, "-m", "modelctl", "lock", "-m", str(manifest)],
            env=env, check=True, capture_output=True, cwd=ROOT_DIR,
        )  # fmt: skip
        lock = manifest.with_suffix(".lock")
        (name,) = sizes
        url = f"{endpoint}/{REPO}/resolve/main/{name}"
        timed_curl(url, work / "warm", ca.ca_cert, None)  # page cache warm for all
        shutil.rmtree(work / "warm")
        cert = ca.ca_cert
        clients: dict[str, Callable[[Path], float]] = {
            "https": lambda d: timed_sync(lock, "fast", base_env(endpoint, d, cert, None)),
            "https + proxy": lambda d: timed_sync(lock, "fast", base_env(endpoint, d, cert, proxy)),
            "httpx2 + proxy": lambda d: timed_sync(
                lock, "httpx", base_env(endpoint, d, cert, proxy)
            ),
            "curl https": lambda d: timed_curl(url, d, cert, None),
            "curl https + proxy": lambda d: timed_curl(url, d, cert, proxy),
        }
        tiny = start_tinyproxy(work)
        if tiny is not None:
            procs.append(tiny[0])
            native = tiny[1]
            clients["https + tinyproxy"] = lambda d: timed_sync(
                lock, "fast", base_env(endpoint, d, cert, native)
            )
            clients["httpx2 + tinyproxy"] = lambda d: timed_sync(
                lock, "httpx", base_env(endpoint, d, cert, native)
            )
            # Plain HTTP, where http.client and httpx2 differed most (3x without a proxy).
            clients["http"] = lambda d: timed_sync(lock, "fast", base_env(plain_url, d, cert, None))
            clients["http + tinyproxy"] = lambda d: timed_sync(
                lock, "fast", base_env(plain_url, d, cert, native, "HTTP_PROXY")
            )
            clients["httpx2 http + tinyproxy"] = lambda d: timed_sync(
                lock, "httpx", base_env(plain_url, d, cert, native, "HTTP_PROXY")
            )
        times = interleaved(args.rounds, clients, work)
        total = sum(sizes.values())
        print(f"\n1 file, {total / MiB:.0f} MiB, median of {args.rounds}, {os.cpu_count()} CPUs")
        print(f"{'client':<22}{'seconds':>10}{'MB/s':>10}{'MB/s range':>16}")
        for label, t in times.items():
            med = statistics.median(t)
            lo, hi = total / max(t) / 1e6, total / min(t) / 1e6
            print(f"{label:<22}{med:>10.2f}{total / med / 1e6:>10.0f}{f'{lo:.0f}-{hi:.0f}':>16}")
        fast = statistics.median(times["https"])
        for label in [c for c in clients if "proxy" in c and not c.startswith("curl")]:
            print(f"{label} speed / https: {fast / statistics.median(times[label]):.2f}x")
        return 0
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
