"""The body check behind HubClient.fetch_checked (lock-time downloads of regular files and
signatures): sizes and digests from the listing are enforced while the body streams."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelctl.errors import IntegrityError
from modelctl.hub.client import _hash_body
from modelctl.lock.digest import Digest, digest_bytes
from modelctl.lock.types import LockedFile


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


@given(st.binary(max_size=2000), st.integers(1, 300), st.booleans(), st.booleans())
def test_the_listed_bytes_give_their_sha256(data: bytes, cut: int, sized: bool, keep: bool) -> None:
    locked = LockedFile("x", len(data) if sized else None, digest_bytes("gitsha1", data))
    got = _hash_body(chunks(data, cut), "here", locked, 4096 if keep else 0)
    assert got.sha256 == Digest("sha256", hashlib.sha256(data).hexdigest())
    assert got.data == (data if keep else None)


@given(st.binary(min_size=1, max_size=500), st.integers(0, 499))
def test_other_bytes_are_refused(data: bytes, at: int) -> None:
    at %= len(data)
    other = data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]
    locked = LockedFile("x", len(data), digest_bytes("gitsha1", data))
    with pytest.raises(IntegrityError, match="do not match the digest"):
        _hash_body([other], "here", locked, 0)


def test_a_body_longer_or_shorter_than_listed_is_refused() -> None:
    data = b"0123456789"
    locked = LockedFile("x", 10, digest_bytes("sha256", data))
    with pytest.raises(IntegrityError, match="larger than locked"):
        _hash_body([data, b"!"], "here", locked, 0)
    with pytest.raises(IntegrityError, match="ended early"):
        _hash_body([data[:5]], "here", locked, 0)


def test_a_signature_past_the_cap_is_refused_while_streaming() -> None:
    """A server that lists no size cannot make lock read an endless signature."""
    locked = LockedFile("model.sig", None, Digest("sha256", "0" * 64))
    endless = (b"x" * 1000 for _ in range(10_000))
    with pytest.raises(IntegrityError, match="larger than modelctl reads here"):
        _hash_body(endless, "here", locked, 16_000)
