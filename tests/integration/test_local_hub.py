"""The local Hub server against the real huggingface_hub client (and raw HTTP)."""

from __future__ import annotations

import hashlib
import http.client
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import huggingface_hub as hf
import pytest
from huggingface_hub import errors as hf_errors

from modelctl.testing.hub import Faults, LocalHub
from tests.support.helpers import seeded_bytes

MiB = 1024 * 1024
REPO = "org/model"
DATASET = "org/data"
REPO_ROOT = Path(__file__).resolve().parents[2]
LFS_THRESHOLD = 4096  # small, so LFS-by-size is cheap to test


def gitsha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pointer(data: bytes) -> bytes:
    """The git-lfs pointer file the Hub stores in git for an LFS file."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256(data)}\nsize {len(data)}\n"
    ).encode()


FILES: dict[str, bytes] = {
    ".gitattributes": b"*.onnx filter=lfs diff=lfs merge=lfs -text\n",
    "config.json": b'{"a": 1}',
    "onnx/model.onnx": seeded_bytes(1, 3000),  # LFS by pattern
    "weights.dat": seeded_bytes(2, 5000),  # LFS by size (>= LFS_THRESHOLD)
    "voices/af.bin": seeded_bytes(3, 2000),  # regular
    "nested/deep/notes.txt": b"notes",
}
LFS = {"onnx/model.onnx", "weights.dat"}
DATA_FILES = {"data/train.csv": b"a,b\n1,2\n", "README.md": b"# data"}


def write_tree(base: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def settle() -> None:
    """Wait out the server's racy window: hashes of files changed < 0.1 s ago aren't cached."""
    time.sleep(0.15)


def etag(data: bytes, lfs: bool) -> str:
    return sha256(data) if lfs else gitsha1(data)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated HF_HOME; returns its hub cache (passed explicitly: constants read env once)."""
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    return home / "hub"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    write_tree(root / REPO / "main", FILES)
    write_tree(root / "@datasets" / DATASET / "main", DATA_FILES)
    return root


@pytest.fixture
def hub(root: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    with LocalHub(root, lfs_threshold=LFS_THRESHOLD, page_size=3) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def api(hub: LocalHub, token: str | bool = False) -> hf.HfApi:
    return hf.HfApi(endpoint=hub.url, token=token)


def download(hub: LocalHub, cache_dir: Path, path: str, **kwargs: Any) -> bytes:
    kwargs.setdefault("token", False)
    local = hf.hf_hub_download(REPO, path, endpoint=hub.url, cache_dir=cache_dir, **kwargs)
    return Path(local).read_bytes()


def resolve_url(hub: LocalHub, path: str, revision: str = "main") -> str:
    return f"{hub.url}/{REPO}/resolve/{revision}/{path}"


# --------------------------------------------------------------------------- metadata


def test_model_info_reports_sizes_and_hashes(hub: LocalHub) -> None:
    info = api(hub).model_info(REPO, files_metadata=True)
    assert info.id == REPO and info.sha == hub.commit_of(REPO)
    assert info.private is False and info.gated is False and info.last_modified is not None
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert set(siblings) == set(FILES)
    for path, data in FILES.items():
        s = siblings[path]
        assert s.size == len(data), path
        if path in LFS:
            assert s.lfs is not None, path
            assert (s.lfs.sha256, s.lfs.size) == (sha256(data), len(data))
            assert s.lfs.pointer_size == len(pointer(data))
            assert s.blob_id == gitsha1(pointer(data))  # git stores the pointer
        else:
            assert s.lfs is None, path
            assert s.blob_id == gitsha1(data)
    # Without blobs=true: names only. By commit: the same snapshot.
    plain = api(hub).model_info(REPO)
    assert all(s.size is None for s in plain.siblings or [])
    assert api(hub).model_info(REPO, revision=info.sha).sha == info.sha


def test_default_lfs_threshold_is_10_mib(tmp_path: Path) -> None:
    at, below = seeded_bytes(4, 10 * MiB), seeded_bytes(5, 10 * MiB - 1)
    write_tree(tmp_path / "org/big/main", {"at.bin": at, "below.bin": below})
    with LocalHub(tmp_path) as server:
        info = api(server).model_info("org/big", files_metadata=True)
        siblings = {s.rfilename: s for s in info.siblings or []}
        assert siblings["at.bin"].lfs is not None
        assert siblings["at.bin"].lfs.sha256 == sha256(at)
        assert siblings["below.bin"].lfs is None
        assert siblings["below.bin"].blob_id == gitsha1(below)


def test_dataset_info_and_download(hub: LocalHub, cache_dir: Path) -> None:
    info = api(hub).dataset_info(DATASET, files_metadata=True)
    assert info.sha == hub.commit_of(DATASET, repo_type="dataset")
    assert {s.rfilename: s.size for s in info.siblings or []} == {
        p: len(d) for p, d in DATA_FILES.items()
    }
    local = hf.hf_hub_download(
        DATASET, "data/train.csv", repo_type="dataset", endpoint=hub.url, cache_dir=cache_dir
    )
    assert Path(local).read_bytes() == DATA_FILES["data/train.csv"]
    folder = hf.snapshot_download(
        DATASET, repo_type="dataset", endpoint=hub.url, cache_dir=cache_dir, token=False
    )
    assert (Path(folder) / "README.md").read_bytes() == DATA_FILES["README.md"]


def test_list_repo_tree_is_paginated(hub: LocalHub) -> None:
    entries = list(api(hub).list_repo_tree(REPO, recursive=True))
    files = {e.path: e for e in entries if isinstance(e, hf.hf_api.RepoFile)}
    dirs = {e.path for e in entries if isinstance(e, hf.hf_api.RepoFolder)}
    assert set(files) == set(FILES)
    assert dirs == {"onnx", "voices", "nested", "nested/deep"}
    for path, data in FILES.items():
        assert files[path].size == len(data)
        lfs = files[path].lfs
        if path in LFS:
            assert lfs is not None and lfs.sha256 == sha256(data)
            assert files[path].blob_id == gitsha1(pointer(data))
        else:
            assert lfs is None and files[path].blob_id == gitsha1(data)
    pages = math.ceil(len(entries) / 3)  # page_size=3
    assert hub.count("GET", "/tree/") == pages > 1

    top = {e.path for e in api(hub).list_repo_tree(REPO)}
    assert top == {".gitattributes", "config.json", "weights.dat", "onnx", "voices", "nested"}
    sub = {e.path for e in api(hub).list_repo_tree(REPO, "nested", recursive=True)}
    assert sub == {"nested/deep", "nested/deep/notes.txt"}


def test_commit_of(hub: LocalHub) -> None:
    commit = hub.commit_of(REPO)
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    assert hub.commit_of(REPO, commit) == commit
    assert hub.commit_of(DATASET, repo_type="dataset") != commit
    with pytest.raises(LookupError):
        hub.commit_of("org/missing")
    with pytest.raises(LookupError):
        hub.commit_of(REPO, "no-such-branch")


# --------------------------------------------------------------------------- downloads


def test_hf_hub_download_regular_and_lfs(hub: LocalHub, cache_dir: Path) -> None:
    for path in ("config.json", "onnx/model.onnx", "weights.dat", "nested/deep/notes.txt"):
        assert download(hub, cache_dir, path) == FILES[path]
    blobs = {p.name for p in (cache_dir / "models--org--model" / "blobs").iterdir()}
    assert gitsha1(FILES["config.json"]) in blobs  # cache key = ETag
    assert sha256(FILES["weights.dat"]) in blobs
    # Pinned to the commit and cached: zero requests.
    hub.clear_requests()
    assert (
        download(hub, cache_dir, "weights.dat", revision=hub.commit_of(REPO))
        == FILES["weights.dat"]
    )
    assert hub.requests == []


def test_snapshot_download(hub: LocalHub, cache_dir: Path) -> None:
    folder = Path(hf.snapshot_download(REPO, endpoint=hub.url, cache_dir=cache_dir, token=False))
    assert folder.name == hub.commit_of(REPO)
    for path, data in FILES.items():
        assert (folder / path).read_bytes() == data


def test_typed_not_found_errors(hub: LocalHub, cache_dir: Path) -> None:
    client = api(hub)
    with pytest.raises(hf_errors.RepositoryNotFoundError) as repo_err:
        client.model_info("org/missing")
    assert type(repo_err.value) is hf_errors.RepositoryNotFoundError
    with pytest.raises(hf_errors.RepositoryNotFoundError):
        hf.hf_hub_download("org/missing", "x", endpoint=hub.url, cache_dir=cache_dir, token=False)
    with pytest.raises(hf_errors.RevisionNotFoundError):
        client.model_info(REPO, revision="nope")
    with pytest.raises(hf_errors.RevisionNotFoundError):
        client.model_info(REPO, revision="0" * 40)
    with pytest.raises(hf_errors.RevisionNotFoundError):
        download(hub, cache_dir, "config.json", revision="nope")
    with pytest.raises(hf_errors.RemoteEntryNotFoundError):
        download(hub, cache_dir, "nope.txt")
    with pytest.raises(hf_errors.RemoteEntryNotFoundError):
        list(client.list_repo_tree(REPO, "no-such-dir"))

    r = httpx2.head(resolve_url(hub, "nope.txt"))
    assert r.status_code == 404 and r.headers["X-Error-Code"] == "EntryNotFound"
    assert r.headers["X-Repo-Commit"] == hub.commit_of(REPO)
    r = httpx2.get(f"{hub.url}/api/models/org/missing")
    assert r.headers["X-Error-Code"] == "RepoNotFound" and "error" in r.json()
    assert r.headers["Content-Length"] == str(len(r.content))


def test_head_headers(hub: LocalHub) -> None:
    commit = hub.commit_of(REPO)
    r = httpx2.head(resolve_url(hub, "config.json"))
    assert r.status_code == 200 and r.content == b""
    assert r.headers["ETag"] == f'"{gitsha1(FILES["config.json"])}"'
    assert r.headers["X-Repo-Commit"] == commit
    assert r.headers["Content-Length"] == str(len(FILES["config.json"]))
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert "X-Linked-Etag" not in r.headers

    data = FILES["weights.dat"]
    r = httpx2.head(resolve_url(hub, "weights.dat", commit))
    assert r.headers["ETag"] == r.headers["X-Linked-Etag"] == f'"{sha256(data)}"'
    assert r.headers["X-Linked-Size"] == r.headers["Content-Length"] == str(len(data))


def test_range_requests(hub: LocalHub) -> None:
    data = FILES["weights.dat"]
    url = resolve_url(hub, "weights.dat")
    n = len(data)
    cases = {
        "bytes=100-": (100, n - 1),
        "bytes=100-199": (100, 199),
        "bytes=-10": (n - 10, n - 1),
        "bytes=0-0": (0, 0),
        "bytes=4990-99999": (4990, n - 1),
    }
    for header, (first, last) in cases.items():
        r = httpx2.get(url, headers={"Range": header})
        assert r.status_code == 206, header
        assert r.headers["Content-Range"] == f"bytes {first}-{last}/{n}"
        assert r.content == data[first : last + 1]
    r = httpx2.get(url, headers={"Range": f"bytes={n}-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{n}"
    r = httpx2.get(url, headers={"Range": "bytes=0-1,5-6"})  # multi-range: ignored
    assert r.status_code == 200 and r.content == data


def test_new_content_is_a_new_commit(hub: LocalHub, root: Path, cache_dir: Path) -> None:
    old = hub.commit_of(REPO)
    main = root / REPO / "main"
    (main / "config.json").write_bytes(b'{"a": 2}')  # same size, same coarse mtime tick
    new = hub.commit_of(REPO)
    assert new != old
    r = httpx2.head(resolve_url(hub, "config.json"))
    new_etag = gitsha1(b'{"a": 2}')
    assert r.headers["ETag"] == f'"{new_etag}"'

    # The old commit keeps its metadata; unchanged files are still served at it.
    info = api(hub).model_info(REPO, revision=old, files_metadata=True)
    config = next(s for s in info.siblings or [] if s.rfilename == "config.json")
    assert config.blob_id == gitsha1(FILES["config.json"])
    assert download(hub, cache_dir, "weights.dat", revision=old) == FILES["weights.dat"]
    with pytest.raises(hf_errors.RemoteEntryNotFoundError):
        download(hub, cache_dir, "config.json", revision=old)  # those bytes are gone

    (main / "config.json").write_bytes(FILES["config.json"])
    assert hub.commit_of(REPO) == old  # the commit is derived from the content


def test_hashing_is_lazy_and_cached(tmp_path: Path) -> None:
    write_tree(tmp_path / "org/a/main", {"x.bin": seeded_bytes(6, 3000), "y.txt": b"y"})
    write_tree(tmp_path / "org/b/main", {"z.bin": seeded_bytes(7, 3000)})
    settle()
    with LocalHub(tmp_path) as server:
        assert server.hashes_computed == 0
        api(server).model_info("org/a", files_metadata=True)
        assert server.hashes_computed == 2  # org/b untouched
        for _ in range(3):
            api(server).model_info("org/a", files_metadata=True)
            httpx2.head(f"{server.url}/org/a/resolve/main/x.bin")
        assert server.hashes_computed == 2
        (tmp_path / "org/a/main/y.txt").write_bytes(b"Y")
        settle()
        for _ in range(3):
            api(server).model_info("org/a", files_metadata=True)
        assert server.hashes_computed == 3  # only the changed file


def test_a_same_size_rewrite_right_after_a_request_is_seen(tmp_path: Path) -> None:
    """No settling here: the rewrite lands within the file system's timestamp tick."""
    base = tmp_path / "org/a/main"
    with LocalHub(tmp_path) as server:
        for i in range(20):
            data = b"%04d" % i
            (base / "f.txt").parent.mkdir(parents=True, exist_ok=True)
            (base / "f.txt").write_bytes(data)
            info = api(server).model_info("org/a", files_metadata=True)
            assert [s.blob_id for s in info.siblings or []] == [gitsha1(data)]


def test_token_auth(root: Path, cache_dir: Path) -> None:
    with LocalHub(root, lfs_threshold=LFS_THRESHOLD, token="s3cret") as server:
        assert "s3cret" not in repr(server)
        with pytest.raises(hf_errors.GatedRepoError):
            api(server).model_info(REPO)
        with pytest.raises(hf_errors.HfHubHTTPError) as bad:
            api(server, token="wrong").model_info(REPO)
        assert bad.value.response.status_code == 401
        for url in (
            f"{server.url}/api/models/{REPO}/tree/main",
            f"{server.url}/{REPO}/resolve/main/config.json",
        ):
            assert httpx2.get(url).status_code == 401
        assert api(server, token="s3cret").model_info(REPO).sha == server.commit_of(REPO)
        got = hf.hf_hub_download(
            REPO, "weights.dat", endpoint=server.url, cache_dir=cache_dir, token="s3cret"
        )
        assert Path(got).read_bytes() == FILES["weights.dat"]
        # The CDN stand-in takes no token (like a signed URL): redirects still download.
        server.faults.redirect_lfs = True
        got = hf.hf_hub_download(
            REPO, "onnx/model.onnx", endpoint=server.url, cache_dir=cache_dir, token="s3cret"
        )
        assert Path(got).read_bytes() == FILES["onnx/model.onnx"]


# --------------------------------------------------------------------------- faults


def test_fault_drop_after_bytes(hub: LocalHub) -> None:
    data = FILES["weights.dat"]
    hub.faults.set(drop_after_bytes=1000, drop_count=1)
    host, port = hub.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    conn.request("GET", f"/{REPO}/resolve/main/weights.dat")
    response = conn.getresponse()
    assert response.headers["Content-Length"] == str(len(data))
    with pytest.raises(http.client.IncompleteRead) as short:
        response.read()
    assert short.value.partial == data[:1000]
    conn.close()
    assert hub.requests[-1].bytes_sent == 1000
    assert httpx2.get(resolve_url(hub, "weights.dat")).content == data  # count used up


def test_hf_hub_download_restarts_after_a_short_drop(hub: LocalHub, cache_dir: Path) -> None:
    hub.faults.set(drop_after_bytes=1000, drop_count=1)
    assert download(hub, cache_dir, "weights.dat") == FILES["weights.dat"]
    gets = [r for r in hub.requests if r.method == "GET"]
    # huggingface_hub only counts bytes it has handed out in 10 MiB chunks: 1000 bytes
    # are lost and the retry starts again from zero, without Range.
    assert [(r.status, r.range, r.bytes_sent) for r in gets] == [
        (200, None, 1000),
        (200, None, 5000),
    ]


def test_hf_hub_download_resumes_with_range(hub: LocalHub, root: Path, cache_dir: Path) -> None:
    data = seeded_bytes(9, 11 * MiB)
    (root / REPO / "main" / "big.bin").write_bytes(data)
    hub.faults.set(drop_after_bytes=10 * MiB + 12345, drop_count=1)
    assert download(hub, cache_dir, "big.bin") == data
    gets = [r for r in hub.requests if r.method == "GET"]
    assert [(r.status, r.range, r.bytes_sent) for r in gets] == [
        (200, None, 10 * MiB + 12345),
        (206, f"bytes={10 * MiB}-", MiB),  # resumed at the last whole 10 MiB chunk
    ]


def test_fault_status_codes_queue(hub: LocalHub) -> None:
    url = resolve_url(hub, "config.json")
    hub.faults.status_codes = [503, 500, 429]
    assert httpx2.head(url).status_code == 200  # HEAD does not consume the queue
    first, second, third = (httpx2.get(url) for _ in range(3))
    assert (first.status_code, first.headers["Retry-After"]) == (503, "1")
    assert second.status_code == 500 and "Retry-After" not in second.headers
    assert (third.status_code, third.headers["Retry-After"]) == (429, "1")
    assert httpx2.get(url).content == FILES["config.json"]
    hub.faults.set(status_codes=[503], retry_after=None)
    assert "Retry-After" not in httpx2.get(url).headers


def test_hf_hub_download_waits_out_a_429(hub: LocalHub, cache_dir: Path) -> None:
    hub.faults.set(status_codes=[429], retry_after=0)
    assert download(hub, cache_dir, "config.json") == FILES["config.json"]
    assert [r.status for r in hub.requests if r.method == "GET"] == [429, 200]


def test_fault_wrong_bytes(hub: LocalHub) -> None:
    data = FILES["weights.dat"]
    url = resolve_url(hub, "weights.dat")
    hub.faults.set(wrong_bytes=True, paths={"weights.dat"})
    r = httpx2.get(url)
    assert r.headers["ETag"] == f'"{sha256(data)}"' and len(r.content) == len(data)
    diff = [i for i, (a, b) in enumerate(zip(r.content, data, strict=True)) if a != b]
    assert diff == [len(data) // 2]
    assert httpx2.get(url, headers={"Range": "bytes=0-99"}).content == data[:100]  # not in range
    assert httpx2.get(resolve_url(hub, "config.json")).content == FILES["config.json"]  # paths
    hub.faults.wrong_byte_offset = 0
    assert httpx2.get(url).content[0] == data[0] ^ 0xFF


def test_fault_redirect_lfs(hub: LocalHub, cache_dir: Path) -> None:
    data = FILES["weights.dat"]
    hub.faults.redirect_lfs = True
    r = httpx2.head(resolve_url(hub, "weights.dat"))
    port = hub.url.rsplit(":", 1)[1]
    assert r.status_code == 302
    assert r.headers["Location"] == f"http://localhost:{port}/blobs/{sha256(data)}"
    assert r.headers["X-Linked-Etag"] == f'"{sha256(data)}"'
    assert r.headers["X-Linked-Size"] == str(len(data))
    assert r.headers["X-Repo-Commit"] == hub.commit_of(REPO)
    assert httpx2.head(resolve_url(hub, "config.json")).status_code == 200  # regular: no redirect

    with httpx2.Client(follow_redirects=True) as client:
        r = client.get(resolve_url(hub, "weights.dat"))
        assert r.content == data and [h.status_code for h in r.history] == [302]
        r = client.get(resolve_url(hub, "weights.dat"), headers={"Range": "bytes=10-"})
        assert r.status_code == 206 and r.content == data[10:]

    hub.clear_requests()
    assert download(hub, cache_dir, "weights.dat") == data
    # huggingface_hub stops its HEAD at the cross-origin 302 and GETs the blob directly.
    assert [(r.method, r.status) for r in hub.requests] == [("HEAD", 302), ("GET", 200)]
    assert hub.requests[1].path == f"/blobs/{sha256(data)}"


def test_fault_redirect_lfs_same_origin(hub: LocalHub, cache_dir: Path) -> None:
    hub.faults.set(redirect_lfs=True, redirect_host="127.0.0.1")
    assert download(hub, cache_dir, "onnx/model.onnx") == FILES["onnx/model.onnx"]
    # Same origin: huggingface_hub follows the HEAD redirect and reads the blob's headers.
    assert [(r.method, r.status, r.path.split("/")[1]) for r in hub.requests] == [
        ("HEAD", 302, REPO.split("/")[0]),
        ("HEAD", 200, "blobs"),
        ("GET", 200, "blobs"),
    ]


@pytest.mark.parametrize("status", [403, 500])
def test_fault_fail_blob_redirect(hub: LocalHub, cache_dir: Path, status: int) -> None:
    hub.faults.set(redirect_lfs=True, fail_blob_redirect=True, fail_blob_status=status)
    with httpx2.Client(follow_redirects=True) as client:
        assert client.get(resolve_url(hub, "weights.dat")).status_code == status
    with pytest.raises(hf_errors.HfHubHTTPError) as err:
        download(hub, cache_dir, "weights.dat")
    assert err.value.response.status_code == status


def test_fault_slow_body(hub: LocalHub) -> None:
    hub.faults.slow_bytes_per_sec = 10_000
    started = time.monotonic()
    assert httpx2.get(resolve_url(hub, "weights.dat")).content == FILES["weights.dat"]
    assert time.monotonic() - started >= 0.45  # 5000 bytes at 10 kB/s


def test_faults_set_and_reset() -> None:
    faults = Faults()
    with pytest.raises(TypeError, match="no_such_fault"):
        faults.set(no_such_fault=1)
    faults.set(status_codes=[500], wrong_bytes=True, paths={"a"})
    assert faults.take_status("b") is None and faults.take_status("a") == 500
    faults.reset()
    assert faults == Faults()


# --------------------------------------------------------------------------- server behaviour


def test_request_log(hub: LocalHub) -> None:
    hub.clear_requests()
    httpx2.head(resolve_url(hub, "config.json"))
    httpx2.get(resolve_url(hub, "weights.dat"), headers={"Range": "bytes=0-9"})
    httpx2.get(f"{hub.url}/api/models/{REPO}?blobs=true")
    records = hub.requests
    assert [(r.method, r.status) for r in records] == [("HEAD", 200), ("GET", 206), ("GET", 200)]
    assert records[1].range == "bytes=0-9" and records[1].bytes_sent == 10
    assert records[2].path == f"/api/models/{REPO}" and records[2].query == "blobs=true"
    assert hub.count() == 3 and hub.count(method="get") == 2
    assert hub.count(path_contains="/resolve/") == 2
    assert hub.count("HEAD", "/api/") == 0
    records.clear()  # a copy
    assert hub.count() == 3
    hub.clear_requests()
    assert hub.requests == []


def test_keep_alive_and_content_length(hub: LocalHub) -> None:
    host, port = hub.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    sockets = set()
    for method, path, status in [
        ("GET", f"/api/models/{REPO}", 200),
        ("GET", "/api/models/org/missing", 404),
        ("HEAD", f"/{REPO}/resolve/main/weights.dat", 200),
        ("GET", "/no/such/route/at/all", 404),
        ("GET", f"/{REPO}/resolve/main/config.json", 200),
    ]:
        conn.request(method, path)
        response = conn.getresponse()
        body = response.read()
        assert response.status == status, path
        if method == "GET":
            assert len(body) == int(response.headers["Content-Length"])
        sockets.add(id(conn.sock))
    assert len(sockets) == 1  # one connection served them all
    conn.request("POST", "/api/models/org/model")
    assert conn.getresponse().status == 405
    conn.close()


def test_paths_outside_the_repo_are_not_found(hub: LocalHub, root: Path) -> None:
    (root / "secret.txt").write_bytes(b"secret")
    for url in (
        f"{hub.url}/{REPO}/resolve/main/..%2F..%2F..%2Fsecret.txt",
        f"{hub.url}/{REPO}/resolve/..%2F..%2F..%2F/secret.txt",
        f"{hub.url}/org/..%2F..%2F/resolve/main/secret.txt",
        f"{hub.url}/blobs/{sha256(b'secret')}",
    ):
        assert httpx2.get(url).status_code == 404, url


def test_stop_closes_idle_connections(root: Path) -> None:
    server = LocalHub(root).start()
    before = threading.active_count()
    conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
    conn.request("GET", f"/api/models/{REPO}")
    conn.getresponse().read()
    server.stop()
    deadline = time.monotonic() + 2
    while threading.active_count() >= before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() < before  # serve thread and handler thread are gone
    conn.close()


def test_subprocess_mode(root: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "modelctl.testing.hub", "--root", str(root), "--port", "0"]
    cmd += ["--lfs-threshold", str(LFS_THRESHOLD), "--status-codes", "503", "--retry-after", "7"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"modelctl-hub listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert match, line
        url = match.group(1)
        first = httpx2.get(f"{url}/{REPO}/resolve/main/weights.dat")
        assert first.status_code == 503 and first.headers["Retry-After"] == "7"
        info = httpx2.get(f"{url}/api/models/{REPO}", params={"blobs": "true"}).json()
        weights = next(s for s in info["siblings"] if s["rfilename"] == "weights.dat")
        assert weights["lfs"]["sha256"] == sha256(FILES["weights.dat"])
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert out == "" and "Traceback" not in err  # exactly one line was printed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
