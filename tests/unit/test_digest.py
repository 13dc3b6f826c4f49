from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelctl.lock.digest import Digest, digest_bytes, digest_file, new_hasher


@given(st.binary(max_size=4096))
def test_gitsha1_is_the_git_blob_id(data: bytes) -> None:
    expected = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert digest_bytes("gitsha1", data) == Digest("gitsha1", expected)


@given(st.binary(max_size=4096), st.integers(min_value=1, max_value=97))
def test_streaming_equals_one_shot(data: bytes, step: int) -> None:
    for algo in ("sha256", "gitsha1", "blake3"):
        h = new_hasher(algo, len(data))
        for i in range(0, len(data), step):
            h.update(data[i : i + step])
        assert Digest(algo, h.hexdigest()) == digest_bytes(algo, data)


@given(st.sampled_from(["sha256", "gitsha1", "blake3"]), st.binary(max_size=64))
def test_parse_round_trips(algo: str, data: bytes) -> None:
    d = digest_bytes(algo, data)
    assert Digest.parse(str(d)) == d


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256:",
        "md5:" + "0" * 32,
        "sha256:" + "0" * 63,
        "sha256:" + "G" * 64,
        "SHA256:" + "0" * 64,
        "gitsha1:" + "0" * 64,
        "sha256:" + "A" * 64,
    ],
)
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        Digest.parse(text)


def test_from_etag_tells_lfs_from_git() -> None:
    assert Digest.from_etag('"' + "a" * 64 + '"') == Digest("sha256", "a" * 64)
    assert Digest.from_etag('W/"' + "b" * 40 + '"') == Digest("gitsha1", "b" * 40)
    assert Digest.from_etag("xyz") is None


def test_digest_file_matches_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40000  # > one read chunk
    p = tmp_path / "f"
    p.write_bytes(data)
    assert digest_file(p, "sha256").hex == hashlib.sha256(data).hexdigest()
    assert digest_file(p, "gitsha1") == digest_bytes("gitsha1", data)


def test_gitsha1_needs_size() -> None:
    with pytest.raises(ValueError):
        new_hasher("gitsha1")
