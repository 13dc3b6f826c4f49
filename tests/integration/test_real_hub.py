"""What the real Hub does beyond the happy path, reproduced by the local Hub (one mode per
row of docs/hub-compatibility.md), and what modelctl makes of it: the CLI end to end."""

from __future__ import annotations

import gzip
import hashlib
import math
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx2
import huggingface_hub as hf
import pytest

from modelctl.cli import main
from modelctl.errors import EXIT_INPUT, EXIT_NETWORK
from modelctl.testing.hub import LocalHub
from tests.support.helpers import seeded_bytes, write_repo
from tests.support.servers.proxy import ConnectProxy
from tests.support.servers.tls import CertAuthority, make_test_ca

TOKEN = "hf_LoggedInUserToken0123456789"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def manifest(tmp_path: Path, repo: str, files: str) -> Path:
    path = tmp_path / "modelctl.yaml"
    path.write_text(f"assets:\n  a:\n    repo: {repo}\n    files: {files}\n")
    return path


def synced(hf_cache: Path, repo: str, path: str) -> bytes:
    snapshots = hf_cache / f"models--{repo.replace('/', '--')}" / "snapshots"
    (commit,) = list(snapshots.iterdir())
    return (commit / path).read_bytes()


@pytest.fixture
def fresh_hf_session() -> Iterator[None]:
    """huggingface_hub's shared httpx2 client reads SSL_CERT_FILE and proxies when it is
    made: a test changing them needs a new one (a CLI run is a new process anyway)."""
    hf.close_session()
    yield
    hf.close_session()


# ------------------------------------------------------------- siblings cut, tree pages


def test_lock_lists_every_file_through_the_tree_when_siblings_are_cut(
    tmp_path: Path, hub_root: Path, hf_env: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    files = {f"shards/part-{i:02d}.txt": f"shard {i}\n".encode() for i in range(25)}
    write_repo(hub_root, "org/big", files)
    with LocalHub(hub_root, page_size=10) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        hub.faults.set(siblings_limit=5)  # the repo info names 5 of 25 files
        m = manifest(tmp_path, "org/big", "['shards/*.txt', shards/part-24.txt]")
        code, _out, err = cli(capsys, "lock", "-m", str(m))
        assert code == 0, err
        lock = (tmp_path / "modelctl.lock").read_text()
        assert all(f"path: {p}" in lock for p in files), lock
        # One repo-info request, then ceil(26 entries / 10) tree pages (25 files, 1 folder).
        api = [r for r in hub.requests if r.path.startswith("/api/")]
        assert [r.path.split("/")[5] for r in api] == ["revision"] + ["tree"] * 3
        assert len(api) == 1 + math.ceil(26 / 10)
        # huggingface_hub's own listing sees them all too.
        listed = hf.HfApi(endpoint=hub.url).list_repo_tree("org/big", recursive=True)
        assert {f.path for f in listed if isinstance(f, hf.hf_api.RepoFile)} == set(files)
        code, _out, err = cli(capsys, "sync", "-m", str(m))
        assert code == 0, err
        assert synced(hf_env, "org/big", "shards/part-24.txt") == b"shard 24\n"


# ------------------------------------------------------------------- rate limits (429)


def test_sync_waits_out_a_rate_limit_window_longer_than_its_backoff(
    tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The Hub's 429s carry `RateLimit: "resolvers";r=0;t=<s>` and no Retry-After. The
    default backoff gives up after 0.5+1+2+4 = 7.5 s; this window lasts 9 s."""
    data = seeded_bytes(1, 100_000)
    write_repo(local_hub.root, "org/t", {"model.bin": data})
    m = manifest(tmp_path, "org/t", "[model.bin]")
    assert cli(capsys, "lock", "-m", str(m))[0] == 0
    local_hub.clear_requests()  # lock downloaded the (regular) file once to hash it
    local_hub.faults.set(retry_after=None)
    local_hub.faults.rate_limit_for(9.0)
    began = time.monotonic()
    code, _out, err = cli(capsys, "sync", "-m", str(m))
    took = time.monotonic() - began
    assert code == 0, err
    assert synced(hf_env, "org/t", "model.bin") == data
    assert took >= 8.5
    assert 'rate limited: RateLimit "resolvers" resets in' in err, err
    # t = the seconds left (9, or 8 if a second passed), + 1 s as huggingface_hub waits.
    assert re.search(r"waiting (9|10) s before retrying a/model.bin", err), err
    gets = [r for r in local_hub.requests if r.method == "GET" and "/resolve/" in r.path]
    assert [r.status for r in gets] == [429, 200]  # waited as told: no needless requests


def test_lock_retries_rate_limited_metadata_and_says_so(
    tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    write_repo(local_hub.root, "org/t", {"a.txt": b"a"})
    m = manifest(tmp_path, "org/t", "[a.txt]")
    local_hub.faults.set(api_status_codes=[429, 503, 429], retry_after=None, rate_limit_reset=1)
    code, _out, err = cli(capsys, "lock", "-m", str(m))
    assert code == 0, err
    assert err.count("note: org/t@main: waiting") == 3, err
    assert 'RateLimit "resolvers" resets in 1 s' in err


def test_lock_gives_up_on_a_rate_limit_longer_than_allowed_with_the_hub_s_message(
    tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    write_repo(local_hub.root, "org/t", {"a.txt": b"a"})
    m = manifest(tmp_path, "org/t", "[a.txt]")
    monkeypatch.setenv("MODELCTL_RETRY_WAIT_MAX", "0.01")
    monkeypatch.setenv("MODELCTL_RETRY_BUDGET", "0.05")  # waiting without progress, in all
    local_hub.faults.rate_limit_for(600)
    code, _out, err = cli(capsys, "lock", "-m", str(m))
    assert code == EXIT_NETWORK, err
    assert "rate limited by the Hub (HTTP 429)" in err
    assert "the Hub says: You have been rate-limited" in err


# ------------------------------------------------------------ tokens, gated, not found


@pytest.mark.parametrize("where", ["HF_HOME/token", "HF_TOKEN_PATH"])
def test_a_gated_repo_locks_and_syncs_with_only_the_stored_login_token(
    where: str, tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    data = seeded_bytes(2, 50_000)
    write_repo(local_hub.root, "org/gated", {"model.bin": data}, lfs_patterns=("*.bin",))
    local_hub.faults.set(gated={"org/gated": TOKEN}, redirect_lfs=True)
    m = manifest(tmp_path, "org/gated", "[model.bin]")
    token_file = hf_env.parent / "token" if where == "HF_HOME/token" else tmp_path / "tok"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text(TOKEN + "\n")  # as `hf auth login` writes it
    if where == "HF_TOKEN_PATH":
        monkeypatch.setenv("HF_TOKEN_PATH", str(token_file))
    code, out, err = cli(capsys, "lock", "-m", str(m))
    assert code == 0, err
    code, out, err = cli(capsys, "sync", "-m", str(m))
    assert code == 0, err
    assert synced(hf_env, "org/gated", "model.bin") == data
    assert TOKEN not in out + err


def test_a_gated_repo_without_access_names_its_page_and_the_hub_s_reason(
    tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    write_repo(local_hub.root, "org/gated", {"a.txt": b"a"})
    local_hub.faults.set(gated={"org/gated": TOKEN})
    m = manifest(tmp_path, "org/gated", "[a.txt]")
    code, _out, err = cli(capsys, "lock", "-m", str(m))  # no token at all: 401
    assert code == EXIT_NETWORK, err
    assert "gated repo" in err and f"{local_hub.url}/org/gated" in err
    assert "hf auth login" in err and "must have access" in err
    monkeypatch.setenv("HF_TOKEN", "hf_SomebodyElse")  # a token without access: 403
    code, _out, err = cli(capsys, "lock", "-m", str(m))
    assert code == EXIT_NETWORK, err
    assert "not in the authorized list" in err and f"{local_hub.url}/org/gated" in err
    assert "hf_SomebodyElse" not in err


def test_a_missing_repo_says_not_found_or_private(
    tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Without a token the Hub answers 401 RepoNotFound, never saying which of the two."""
    local_hub.faults.set(missing_repo_401=True)
    m = manifest(tmp_path, "org/nope", "[a.txt]")
    code, _out, err = cli(capsys, "lock", "-m", str(m))
    assert code == EXIT_INPUT, err
    assert "repository not found (or private)" in err
    assert "the Hub says: Repository not found" in err
    assert "hf auth login" in err
    r = httpx2.get(f"{local_hub.url}/api/models/org/nope")
    assert (r.status_code, r.headers["X-Error-Code"]) == (401, "RepoNotFound")
    with pytest.raises(hf.errors.RepositoryNotFoundError):
        hf.HfApi(endpoint=local_hub.url, token=False).model_info("org/nope")


# ------------------------------------------------------------------------- timeouts


def test_slow_storage_headers_sync_when_hf_hub_download_timeout_allows(
    tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Headers 10.5 s late: later than the default timeout (10 s, as huggingface_hub)."""
    data = seeded_bytes(3, 10_000)
    write_repo(local_hub.root, "org/t", {"model.bin": data})
    m = manifest(tmp_path, "org/t", "[model.bin]")
    assert cli(capsys, "lock", "-m", str(m))[0] == 0
    local_hub.clear_requests()  # lock downloaded the (regular) file once to hash it
    local_hub.faults.set(header_delay_s=10.5)
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    code, _out, err = cli(capsys, "sync", "-m", str(m))
    assert code == 0, err
    assert synced(hf_env, "org/t", "model.bin") == data
    gets = [r for r in local_hub.requests if r.method == "GET" and "/resolve/" in r.path]
    assert len(gets) == 1  # no timeout, no retry


def test_a_download_timeout_shorter_than_the_headers_is_a_retry_then_an_error(
    tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    write_repo(local_hub.root, "org/t", {"model.bin": seeded_bytes(4, 1000)})
    m = manifest(tmp_path, "org/t", "[model.bin]")
    assert cli(capsys, "lock", "-m", str(m))[0] == 0
    local_hub.faults.set(header_delay_s=1.0)
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "0.3")
    code, _out, err = cli(capsys, "sync", "-m", str(m))
    assert code == EXIT_NETWORK, err
    assert "timed out" in err and "waiting" in err


# --------------------------------------------------- redirects, CDN, encodings


def test_small_files_through_the_same_origin_307_to_resolve_cache(
    tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    write_repo(local_hub.root, "org/t", {"config.json": b'{"a": 1}'})
    local_hub.faults.set(resolve_cache_redirect=True)
    m = manifest(tmp_path, "org/t", "[config.json]")
    assert cli(capsys, "lock", "-m", str(m))[0] == 0
    code, _out, err = cli(capsys, "sync", "-m", str(m))
    assert code == 0, err
    assert synced(hf_env, "org/t", "config.json") == b'{"a": 1}'
    gets = [(r.status, r.path.split("/")[1:3]) for r in local_hub.requests if r.method == "GET"]
    assert (307, ["org", "t"]) in gets and (200, ["api", "resolve-cache"]) in gets


def test_a_cdn_that_rejects_authorization_and_ignores_range(
    tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The token goes to the Hub, never to the storage on another origin (which answers
    400 to a request carrying it); a 200 to a resumed Range request restarts from zero."""
    data = seeded_bytes(5, 400_000)
    write_repo(local_hub.root, "org/t", {"model.bin": data}, lfs_patterns=("*.bin",))
    local_hub.faults.set(
        redirect_lfs=True, cdn_rejects_authorization=True, cdn_ignores_range=True,
        drop_after_bytes=150_000, drop_count=1,
    )  # fmt: skip
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    m = manifest(tmp_path, "org/t", "[model.bin]")
    assert cli(capsys, "lock", "-m", str(m))[0] == 0
    code, _out, err = cli(capsys, "sync", "-m", str(m))
    assert code == 0, err
    assert synced(hf_env, "org/t", "model.bin") == data
    blobs = [r for r in local_hub.requests if r.path.startswith("/blobs/")]
    assert [(r.status, r.range is not None) for r in blobs] == [(200, False), (200, True)]
    # The storage stand-in is honest: a request carrying the token gets 400.
    sha = hashlib.sha256(data).hexdigest()
    other = local_hub.url.replace("127.0.0.1", "localhost")
    r = httpx2.get(f"{other}/blobs/{sha}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 400


def test_text_is_never_taken_gzip_encoded(
    tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    text = b"hello " * 1000
    write_repo(local_hub.root, "org/t", {"vocab.txt": text})
    local_hub.faults.set(gzip_text=True)
    m = manifest(tmp_path, "org/t", "[vocab.txt]")
    assert cli(capsys, "lock", "-m", str(m))[0] == 0
    code, _out, err = cli(capsys, "sync", "-m", str(m))
    assert code == 0, err
    assert synced(hf_env, "org/t", "vocab.txt") == text
    # The server does compress for a client that allows it.
    req = urllib.request.Request(
        f"{local_hub.url}/org/t/resolve/main/vocab.txt", headers={"Accept-Encoding": "gzip"}
    )
    with urllib.request.urlopen(req) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(resp.read()) == text


def test_files_over_50_gb_are_asked_with_range_from_the_first_byte(
    tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The Hub wants Range for a single file over 50 GB: the bound, lowered to 100 KB here."""
    import modelctl.transfer.fetch

    small, big = seeded_bytes(9, 1000), seeded_bytes(10, 200_000)
    write_repo(local_hub.root, "org/t", {"small.bin": small, "big.bin": big})
    monkeypatch.setattr(modelctl.transfer.fetch, "RANGE_ALWAYS_ABOVE", 100_000)
    m = manifest(tmp_path, "org/t", "['*.bin']")
    assert cli(capsys, "lock", "-m", str(m))[0] == 0
    code, _out, err = cli(capsys, "sync", "-m", str(m))
    assert code == 0, err
    assert synced(hf_env, "org/t", "big.bin") == big
    ranges = {r.path.rsplit("/", 1)[1]: (r.range, r.status) for r in local_hub.requests
              if r.method == "GET" and "/resolve/" in r.path}  # fmt: skip
    assert ranges == {"small.bin": (None, 200), "big.bin": ("bytes=0-", 206)}


# ----------------------------------------------------------------- HTTPS and proxies


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def tls_hub(
    hub_root: Path, hf_env: Path, test_ca: CertAuthority, monkeypatch: pytest.MonkeyPatch,
    fresh_hf_session: None,
) -> Iterator[LocalHub]:  # fmt: skip
    with LocalHub(hub_root, tls=test_ca.server) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub


def test_an_https_hub_with_a_private_ca_needs_ssl_cert_file(
    tmp_path: Path, tls_hub: LocalHub, hf_env: Path, test_ca: CertAuthority,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    data = seeded_bytes(6, 300_000)
    write_repo(tls_hub.root, "org/t", {"model.bin": data}, lfs_patterns=("*.bin",))
    tls_hub.faults.set(redirect_lfs=True)
    m = manifest(tmp_path, "org/t", "[model.bin]")
    code, _out, err = cli(capsys, "lock", "-m", str(m))
    assert code == EXIT_NETWORK and "CERTIFICATE_VERIFY_FAILED" in err, err
    monkeypatch.setenv("SSL_CERT_FILE", str(test_ca.ca_cert))
    hf.close_session()
    assert cli(capsys, "lock", "-m", str(m))[0] == 0
    code, _out, err = cli(capsys, "sync", "-m", str(m))
    assert code == 0, err
    assert synced(hf_env, "org/t", "model.bin") == data


def test_sync_through_a_connect_proxy_keeps_the_fast_transport(
    tmp_path: Path, tls_hub: LocalHub, hf_env: Path, test_ca: CertAuthority,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from modelctl.transfer.http import StdlibTransport, default_transport

    data = seeded_bytes(7, 300_000)
    write_repo(tls_hub.root, "org/t", {"model.bin": data, "a.txt": b"a"})
    monkeypatch.setenv("SSL_CERT_FILE", str(test_ca.ca_cert))
    with ConnectProxy(auth=("me", "pw")) as proxy:
        proxied = proxy.url.replace("http://", "http://me:pw@")
        monkeypatch.setenv("HTTPS_PROXY", proxied)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        hf.close_session()
        assert isinstance(default_transport(urllib.request.getproxies()), StdlibTransport)
        m = manifest(tmp_path, "org/t", "[model.bin, a.txt]")
        assert cli(capsys, "lock", "-m", str(m))[0] == 0
        code, _out, err = cli(capsys, "sync", "-m", str(m))
        assert code == 0, err
        tunnels = [r for r in proxy.requests if r.method == "CONNECT"]
        assert tunnels and all(r.status == 200 for r in tunnels)
        assert {r.target for r in tunnels} == {f"127.0.0.1:{tls_hub.port}"}
    assert synced(hf_env, "org/t", "model.bin") == data
    # Through the tunnels, end to end: lock hashes both (regular) files, sync downloads both.
    assert tls_hub.count("GET", "/resolve/") == 4


def test_plain_http_through_a_forward_proxy_and_no_proxy(
    tmp_path: Path, hub_root: Path, hf_env: Path, local_hub: LocalHub,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    fresh_hf_session: None,
) -> None:  # fmt: skip
    from modelctl.hub.source import HubSource
    from modelctl.lock.lockfile import load
    from modelctl.settings import from_env
    from modelctl.store.layout import HfCacheStore
    from modelctl.sync import sync

    write_repo(local_hub.root, "org/t", {"a.txt": b"a" * 1000})
    m = manifest(tmp_path, "org/t", "[a.txt]")
    assert cli(capsys, "lock", "-m", str(m))[0] == 0
    lock = load(tmp_path / "modelctl.lock")
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        import os

        settings = from_env(os.environ)
        sync(lock, HfCacheStore(hf_env), HubSource(settings))
        forwarded = [r for r in proxy.requests if r.method == "GET"]
        assert len(forwarded) == 1 and forwarded[0].target.startswith(local_hub.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        shutil_rm(hf_env)
        sync(lock, HfCacheStore(hf_env), HubSource(from_env(os.environ)))
        assert len([r for r in proxy.requests if r.method == "GET"]) == 1  # bypassed


def shutil_rm(path: Path) -> None:
    import shutil

    shutil.rmtree(path)


# ------------------------------------------------- huggingface_hub against the local Hub


MODES: dict[str, dict[str, object]] = {
    "plain": {},
    "siblings cut, tree pages": {"siblings_limit": 1},
    "307 resolve-cache": {"resolve_cache_redirect": True},
    "CDN on another origin": {"redirect_lfs": True, "cdn_rejects_authorization": True},
    "gzip text": {"gzip_text": True},
    "slow headers": {"header_delay_s": 0.3},
}


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_huggingface_hub_itself_works_against_every_mode(
    mode: dict[str, object], tmp_path: Path, hub_root: Path, hf_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    files = {
        "config.json": b'{"x": 1}',
        "w/model.bin": seeded_bytes(8, 20_000),
        "t.txt": b"t" * 500,
    }
    write_repo(hub_root, "org/t", files, lfs_patterns=("*.bin",))
    with LocalHub(hub_root, page_size=2) as hub:
        hub.faults.set(**mode)
        api = hf.HfApi(endpoint=hub.url, token=False)
        info = api.model_info("org/t")
        assert info.sha is not None
        tree = api.list_repo_tree("org/t", recursive=True, revision=info.sha)
        assert {f.path for f in tree if isinstance(f, hf.hf_api.RepoFile)} == set(files) | {
            ".gitattributes"
        }
        one = hf.hf_hub_download(
            "org/t", "t.txt", endpoint=hub.url, cache_dir=tmp_path / "c1", token=False
        )
        assert Path(one).read_bytes() == files["t.txt"]
        snap = hf.snapshot_download(
            "org/t", endpoint=hub.url, cache_dir=tmp_path / "c2", token=False
        )
        for path, data in files.items():
            assert (Path(snap) / path).read_bytes() == data


def test_huggingface_hub_itself_over_tls_through_the_proxy_gated_and_rate_limited(
    tmp_path: Path, tls_hub: LocalHub, test_ca: CertAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"config.json": b'{"x": 1}', "model.bin": seeded_bytes(12, 30_000)}
    write_repo(tls_hub.root, "org/gated", files, lfs_patterns=("*.bin",))
    tls_hub.faults.set(gated={"org/gated": TOKEN}, redirect_lfs=True, retry_after=None)
    monkeypatch.setenv("SSL_CERT_FILE", str(test_ca.ca_cert))
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        hf.close_session()
        api = hf.HfApi(endpoint=tls_hub.url, token=TOKEN)
        info = api.model_info("org/gated")
        tree = api.list_repo_tree("org/gated", recursive=True, revision=info.sha)
        assert {f.path for f in tree} == set(files) | {".gitattributes"}
        snap = hf.snapshot_download(
            "org/gated", endpoint=tls_hub.url, cache_dir=tmp_path / "c", token=TOKEN
        )
        for path, data in files.items():
            assert (Path(snap) / path).read_bytes() == data
        assert any(r.method == "CONNECT" for r in proxy.requests)
        # Its downloads retry a 429 after RateLimit's t + 1 s, as modelctl does (its
        # model_info does not retry at all).
        tls_hub.faults.rate_limit_for(1.0)
        again = hf.hf_hub_download(
            "org/gated", "config.json", endpoint=tls_hub.url, cache_dir=tmp_path / "e",
            token=TOKEN,
        )  # fmt: skip
        assert Path(again).read_bytes() == files["config.json"]
        with pytest.raises(hf.errors.GatedRepoError):
            hf.hf_hub_download(
                "org/gated", "config.json", endpoint=tls_hub.url, cache_dir=tmp_path / "d",
                token=False,
            )  # fmt: skip
    statuses = [r.status for r in tls_hub.requests if r.method == "GET" and "config" in r.path]
    assert statuses[-2:] == [429, 200]
