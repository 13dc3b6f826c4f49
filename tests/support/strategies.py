"""Hypothesis strategies for modelctl's values."""

from __future__ import annotations

from hypothesis import strategies as st

from modelctl.lock.digest import Digest
from modelctl.lock.lockfile import LOCK_VERSION
from modelctl.lock.types import (
    FileRef,
    Lock,
    LockedAsset,
    LockedFile,
    LockedSource,
    sha256_of,
)

_name_chars = st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_.")
names = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789"),
    st.text(_name_chars, max_size=12),
)
repo_ids = st.builds(lambda a, b: f"{a}/{b}", names, names)
segments = st.text(
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABC0123456789_-.é"), min_size=1, max_size=10
).filter(lambda s: s not in (".", ".."))
rel_paths = st.lists(segments, min_size=1, max_size=3).map("/".join)
hexes = st.text("0123456789abcdef", min_size=64, max_size=64)
commits = st.text("0123456789abcdef", min_size=40, max_size=40)
digests = st.one_of(
    hexes.map(lambda h: Digest("sha256", h)),
    commits.map(lambda h: Digest("gitsha1", h)),
)
sizes = st.one_of(st.none(), st.integers(min_value=0, max_value=2**45))
roles = st.sampled_from(["file", "model", "tokenizer", "voice"])

locked_files = st.builds(LockedFile, rel_paths, sizes, digests, roles)


@st.composite
def locked_sources(draw: st.DrawFn) -> LockedSource:
    files = draw(st.lists(locked_files, max_size=5, unique_by=lambda f: f.path))
    return LockedSource(
        draw(repo_ids),
        draw(st.sampled_from(["model", "dataset"])),
        draw(st.one_of(st.just("main"), names, commits)),
        draw(commits),
        tuple(files),
    )


@st.composite
def locked_assets(draw: st.DrawFn, name: str) -> LockedAsset:
    # One source per repo: a lockfile refuses a path locked twice in one repo of an asset,
    # which two revisions of the same repo could otherwise draw.
    sources = draw(
        st.lists(locked_sources(), max_size=3, unique_by=lambda s: (s.repo_type, s.repo_id))
    )
    return LockedAsset(
        name,
        draw(st.sampled_from(["files", "gguf", "kokoro", "stt", "api"])),
        draw(st.booleans()),
        sha256_of(draw(st.text(max_size=5))),
        tuple(sources),
    )


@st.composite
def locks(draw: st.DrawFn) -> Lock:
    asset_names = draw(st.lists(names, max_size=4, unique=True))
    assets = tuple(draw(locked_assets(n)) for n in asset_names)
    return Lock(LOCK_VERSION, sha256_of(draw(st.text(max_size=5))), assets)


file_refs = st.builds(
    FileRef,
    names,
    st.sampled_from(["model", "dataset"]),
    repo_ids,
    commits,
    rel_paths,
    sizes,
    digests,
    roles,
)
