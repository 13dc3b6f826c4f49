"""hubjson: any bytes a server sends give a checked RepoSnapshot or one HubResponseError."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelctl.errors import HubResponseError
from modelctl.fs.paths import MAX_PATH_CHARS
from modelctl.hub.answers import (
    MAX_FILE_SIZE,
    RemoteFile,
    checked_listing,
    parse_repo_info,
    parse_tree_page,
)
from modelctl.lock.types import is_commit

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
siblings = st.lists(
    st.fixed_dictionaries(
        {"rfilename": st.one_of(st.sampled_from(["a", "a/b", "c.bin", ""]), json_values)},
        optional={
            "size": st.one_of(st.integers(-3, 2**64), json_values),
            "blobId": st.one_of(st.text("0123456789abcdef", min_size=40, max_size=40), json_values),
            "lfs": st.one_of(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "size": st.one_of(st.integers(-3, 2**64), json_values),
                        "sha256": st.one_of(
                            st.text("0123456789abcdef", min_size=64, max_size=64), json_values
                        ),
                    },
                ),
                json_values,
            ),
        },
    ),
    max_size=5,
)
infos = st.fixed_dictionaries(
    {},
    optional={
        "sha": st.one_of(st.just("e" * 40), json_values),
        "siblings": st.one_of(siblings, json_values),
    },
)


@given(st.one_of(infos, json_values))
def test_any_json_gives_checked_values_or_one_clear_error(info: object) -> None:
    body = json.dumps(info).encode()
    try:
        snap = parse_repo_info(body, "o/r", "model", "main", "http://hub")
    except HubResponseError as exc:
        assert exc.where == "o/r@main"
        return
    assert is_commit(snap.commit)
    paths = [f.path for f in snap.files]
    assert len(paths) == len(set(paths))
    for f in snap.files:
        assert isinstance(f.path, str) and 0 < len(f.path) <= MAX_PATH_CHARS
        assert f.size is None or (type(f.size) is int and 0 <= f.size <= MAX_FILE_SIZE)
        assert not any(p.startswith(f.path + "/") for p in paths)


@given(st.binary(max_size=64))
def test_any_bytes_give_a_snapshot_or_one_clear_error(body: bytes) -> None:
    with contextlib.suppress(HubResponseError):  # anything else fails the test
        parse_repo_info(body, "o/r", "model", "main", "http://hub")


tree_entries = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(["file", "directory", "link"]),
                "path": st.one_of(st.sampled_from(["a", "a/b", "c.bin", ""]), json_values),
            },
            optional={
                "size": st.one_of(st.integers(-3, 2**64), json_values),
                "oid": st.one_of(
                    st.text("0123456789abcdef", min_size=40, max_size=40), json_values
                ),
                "lfs": st.one_of(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "oid": st.text("0123456789abcdef", min_size=64, max_size=64),
                            "size": st.one_of(st.integers(-3, 2**64), json_values),
                        },
                    ),
                    json_values,
                ),
                "xetHash": json_values,
            },
        ),
        json_values,
    ),
    max_size=5,
)


@given(st.one_of(tree_entries, json_values))
def test_any_tree_page_gives_checked_files_or_one_clear_error(page: object) -> None:
    try:
        files = parse_tree_page(json.dumps(page).encode(), "o/r", "model", "e" * 40, "http://hub")
    except HubResponseError as exc:
        assert exc.where == f"o/r@{'e' * 40}" and "tree listing" in exc.message
        return
    for f in files:
        assert isinstance(f.path, str) and 0 < len(f.path) <= MAX_PATH_CHARS
        assert f.size is None or (type(f.size) is int and 0 <= f.size <= MAX_FILE_SIZE)


def test_a_tree_entry_reads_as_huggingface_hub_reads_it() -> None:
    """``oid`` is the git blob id; for LFS files ``lfs.oid`` is the sha256 (RepoFile)."""
    page = [
        {"type": "directory", "oid": "1" * 40, "size": 0, "path": "d"},
        {"type": "file", "oid": "2" * 40, "size": 3, "path": "d/a.txt"},
        {
            "type": "file",
            "oid": "3" * 40,
            "size": 9,
            "path": "m.bin",
            "lfs": {"oid": "4" * 64, "size": 9, "pointerSize": 130},
            "xetHash": "5" * 64,
        },
    ]
    files = parse_tree_page(json.dumps(page).encode(), "o/r", "model", "e" * 40, "http://hub")
    assert [(f.path, f.size, str(f.digest)) for f in files] == [
        ("d/a.txt", 3, "gitsha1:" + "2" * 40),
        ("m.bin", 9, "sha256:" + "4" * 64),
    ]


def test_a_tree_must_name_every_file_of_the_repo_info() -> None:
    files = [RemoteFile("a", 1, None)]
    assert checked_listing(files, ["a"], "o/r@x", "http://hub") == tuple(files)
    with pytest.raises(HubResponseError, match="not in it"):
        checked_listing(files, ["a", "b"], "o/r@x", "http://hub")
