"""The CycloneDX export (validated against the schema shipped in cyclonedx-python-lib),
Lock.select (--asset) and outdated's file comparison: pure logic, property-tested."""

from __future__ import annotations

import json
from functools import cache

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from hypothesis import given, settings
from hypothesis import strategies as st

from modelctl.errors import InputError
from modelctl.lock.digest import Digest
from modelctl.lock.sbom import cyclonedx, purl
from modelctl.lock.types import Lock, LockedFile
from modelctl.outdated import file_changes
from modelctl.values import replace
from tests.support.strategies import locked_files, locks


@cache
def validator() -> JsonStrictValidator:
    return JsonStrictValidator(SchemaVersion.V1_6)


@settings(max_examples=60, deadline=None)
@given(locks())
def test_every_lock_gives_a_valid_cyclonedx_sbom_with_one_component_per_file(lock: Lock) -> None:
    text = cyclonedx(lock)
    errors = validator().validate_str(text)
    assert errors is None, errors
    doc = json.loads(text)
    wanted = {(r.repo_type, r.repo_id, r.commit, r.path) for r in lock.files()}
    assert len(doc["components"]) == len(wanted)
    refs = [c["bom-ref"] for c in doc["components"]]
    assert len(set(refs)) == len(refs)
    assert cyclonedx(lock) == text  # deterministic


@settings(max_examples=60, deadline=None)
@given(locks())
def test_files_carry_their_sha256_and_git_blob_ids_only_as_properties(lock: Lock) -> None:
    by_ref = {c["bom-ref"]: c for c in json.loads(cyclonedx(lock))["components"]}
    for r in lock.files():
        c = by_ref[purl(r.repo_id, r.repo_type, r.commit, r.path)]
        props = {p["name"]: p["value"] for p in c["properties"]}
        assert r.asset in {p["value"] for p in c["properties"] if p["name"] == "modelctl:asset"}
        if r.digest.algorithm == "sha256" and props["modelctl:digest"] == str(r.digest):
            assert c["hashes"] == [{"alg": "SHA-256", "content": r.digest.hex}]
        if r.digest.algorithm == "gitsha1" and props["modelctl:digest"] == str(r.digest):
            assert props["modelctl:git_blob"] == r.digest.hex
            # A git blob id is not the file's SHA-1: never a hash. These locks have no
            # sha256 for regular files (as older locks), so they get none.
            assert "hashes" not in c


@settings(max_examples=30, deadline=None)
@given(locks())
def test_a_regular_files_sha256_is_its_hash(lock: Lock) -> None:
    sha = Digest("sha256", "5" * 64)
    with_sha = Lock(
        lock.version,
        lock.manifest_hash,
        tuple(
            replace(
                a,
                sources=tuple(
                    replace(s, files=tuple(replace(f, sha256=sha) for f in s.files))
                    for s in a.sources
                ),
            )
            for a in lock.assets
        ),
    )
    text = cyclonedx(with_sha)
    assert validator().validate_str(text) is None
    for c in json.loads(text)["components"]:
        props = {p["name"]: p["value"] for p in c["properties"]}
        if props["modelctl:digest"].startswith("gitsha1:"):
            assert c["hashes"] == [{"alg": "SHA-256", "content": "5" * 64}]


def test_purl_form() -> None:
    commit = "A" * 40
    assert purl("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "model", commit, "x q4.gguf") == (
        "pkg:huggingface/Qwen/Qwen2.5-0.5B-Instruct-GGUF@" + "a" * 40 + "#x%20q4.gguf"
    )
    assert purl("org/data", "dataset", "b" * 40) == (
        "pkg:huggingface/org/data@"
        + "b" * 40
        + "?repository_url=https%3A%2F%2Fhuggingface.co%2Fdatasets"
    )


@given(locks(), st.data())
def test_select_keeps_exactly_the_named_assets(lock: Lock, data: st.DataObject) -> None:
    names = [a.name for a in lock.assets]
    chosen = data.draw(st.lists(st.sampled_from(names), unique=True)) if names else []
    sub = lock.select(chosen)
    if not chosen:
        assert sub == lock
        return
    assert {a.name for a in sub.assets} == set(chosen)
    assert set(sub.files()) == {r for r in lock.files() if r.asset in chosen}
    assert sub.manifest_hash == lock.manifest_hash


@given(locks())
def test_select_of_an_unknown_name_lists_the_locked_ones(lock: Lock) -> None:
    with pytest.raises(InputError) as exc:
        lock.select(["no such asset!"])
    assert exc.value.exit_code == 2
    for a in lock.assets:
        assert a.name in (exc.value.expected or "")


@given(
    st.lists(locked_files, max_size=6, unique_by=lambda f: f.path),
    st.lists(locked_files, max_size=6, unique_by=lambda f: f.path),
)
def test_file_changes_is_the_difference_by_path(
    old: list[LockedFile], new: list[LockedFile]
) -> None:
    changes = {c.path: c for c in file_changes(tuple(old), tuple(new))}
    before = {f.path: f for f in old}
    after = {f.path: f for f in new}
    for path in before.keys() | after.keys():
        a, b = before.get(path), after.get(path)
        same = a is not None and b is not None and (a.size, a.digest) == (b.size, b.digest)
        assert (path not in changes) == same
    assert file_changes(tuple(old), tuple(old)) == ()


def test_file_changes_names_the_kind_of_change() -> None:
    d1, d2 = Digest("sha256", "1" * 64), Digest("sha256", "2" * 64)
    old = (LockedFile("a", 1, d1), LockedFile("b", 1, d1))
    new = (LockedFile("b", 2, d2), LockedFile("c", 1, d1))
    assert [(c.path, c.change) for c in file_changes(old, new)] == [
        ("a", "removed"),
        ("b", "changed"),
        ("c", "added"),
    ]
