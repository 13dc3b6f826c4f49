"""The hand check of a lockfile accepts exactly what lockfile.schema.json accepts."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from modelctl.lock.schema import is_valid_lock
from modelctl.lock.yamldoc import load_schema

HEX = "0123456789abcdef"
VALIDATOR = jsonschema.Draft202012Validator(load_schema("lockfile.schema.json"))

sha256 = st.text(HEX, min_size=64, max_size=64).map(lambda h: f"sha256:{h}")
gitsha1 = st.text(HEX, min_size=40, max_size=40).map(lambda h: f"gitsha1:{h}")
file_st = st.fixed_dictionaries(
    {
        "path": st.text(min_size=1, max_size=12),
        "size": st.one_of(st.none(), st.integers(0, 2**45)),
        "digest": st.one_of(sha256, gitsha1),
        "role": st.sampled_from(["file", "model", "tokenizer", "voice", "signature"]),
    },
    optional={"sha256": sha256},  # a regular file's SHA-256 (absent in older locks)
)
source_st = st.fixed_dictionaries(
    {
        "repo": st.sampled_from(["org/name", "gpt2", "a.b/c-d_e", "X" * 96]),
        "repo_type": st.sampled_from(["model", "dataset"]),
        "revision": st.text(min_size=1, max_size=8),
        "commit": st.text(HEX, min_size=40, max_size=40),
        "files": st.lists(file_st, max_size=3),
    }
)
signature_st = st.fixed_dictionaries(
    {
        "path": st.text(min_size=1, max_size=12),
        "sha256": sha256,
        "method": st.sampled_from(["key", "certificate", "sigstore"]),
        "identity": st.text(min_size=1, max_size=20),
    }
)
asset_st = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["files", "gguf", "kokoro", "stt", "api"]),
        "enabled": st.booleans(),
        "spec": sha256,
        "sources": st.lists(source_st, max_size=2),
    },
    optional={"signature": signature_st},  # an asset whose signature was checked
)
name_st = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,12}\Z")
lock_st = st.fixed_dictionaries(
    {
        "version": st.just(1),
        "manifest": sha256,
        "assets": st.dictionaries(name_st, asset_st, max_size=3),
    }
)
# Values near the edges of every rule: types JSON Schema tells apart (bool is no
# integer, 1.0 is), patterns matched with re.search ("$" before a final newline),
# lengths and the size bound.
EDGE: list[Any] = [
    None, True, False, 0, 1, -1, 1.0, 0.5, 2.0, float("inf"), float("nan"), "", "x",
    "1", "model", "model\n", "files", "file", "key", "sigstore", "dataset",
    "sha256:" + "a" * 64,
    "sha256:" + "a" * 64 + "\n", "sha256:" + "A" * 64, "gitsha1:" + "0" * 40,
    "gitsha1:" + "0" * 39, "0" * 40, "0" * 40 + "\n", "g" * 40, "org/name", "org/na me",
    "/x", "x" * 256, "x" * 257, "x" * 1024, "x" * 1025, 1099511627776000,
    1099511627776001, 1099511627776000.0, 2**70, [], {}, [1], {"a": 1},
]  # fmt: skip
KEYS = ["version", "manifest", "assets", "kind", "enabled", "spec", "sources", "repo",
        "repo_type", "revision", "commit", "files", "path", "size", "digest", "role", "sha256",
        "signature", "method", "identity", "extra",
        "", "a", "-bad", "x" * 101, "ok\n"]  # fmt: skip
EDGE_REPR = repr(EDGE)
# A fresh copy each draw: mutate() edits values in place, and a drawn [] or {"a": 1} that
# went into a lock and was then added to would change EDGE itself for later examples
# (hypothesis: FlakyStrategyDefinition, "Inconsistent data generation").
value_st = st.one_of(
    st.sampled_from(EDGE).map(copy.deepcopy), st.integers(), st.floats(), st.text(max_size=4)
)


def schema_valid(data: Any) -> bool:
    return VALIDATOR.is_valid(data)


def nodes(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(data, dict):
        for k, v in data.items():
            yield from nodes(v, (*path, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from nodes(v, (*path, i))


def mutate(root: Any, path: tuple[Any, ...], action: str, value: Any, key: str) -> Any:
    if not path:
        return value if action == "replace" else root
    parent = root
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "replace":
        parent[last] = value
    elif action == "delete":
        del parent[last]
    elif action == "add" and isinstance(parent, dict):
        parent[key] = value
    elif action == "rename" and isinstance(parent, dict):
        parent[key] = parent.pop(last)
    elif action == "add":
        parent.append(value)
    return root


@given(lock_st)
def test_valid_locks_are_valid_for_both(lock: dict[str, Any]) -> None:
    assert schema_valid(lock)
    assert is_valid_lock(lock)


@settings(max_examples=300)
@given(lock_st, st.data())
def test_after_mutations_both_say_the_same(lock: dict[str, Any], data: st.DataObject) -> None:
    lock = copy.deepcopy(lock)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(list(nodes(lock))))
        action = data.draw(st.sampled_from(["replace", "replace", "delete", "add", "rename"]))
        lock = mutate(lock, path, action, data.draw(value_st), data.draw(st.sampled_from(KEYS)))
    assert is_valid_lock(lock) == schema_valid(lock), lock
    assert repr(EDGE) == EDGE_REPR, "a mutation reached into the shared EDGE values"


def _one_of_each() -> dict[str, Any]:
    f = {"path": "w.bin", "size": 5, "digest": "sha256:" + "a" * 64, "role": "model"}
    s = {"repo": "org/n", "repo_type": "model", "revision": "main", "commit": "0" * 40}
    a = {"kind": "gguf", "enabled": True, "spec": "sha256:" + "b" * 64}
    return {
        "version": 1,
        "manifest": "sha256:" + "c" * 64,
        "assets": {"llm": {**a, "sources": [{**s, "files": [f]}]}},
    }


def test_every_edge_value_at_every_place_gets_the_same_verdict() -> None:
    """Exhaustive over the leaves of a lock and the edge values: the cases a random
    mutation reaches only rarely (1.0 as a size, a digest ending in a newline ...)."""
    base = _one_of_each()
    paths = [p for p in nodes(base) if p]
    checked = 0
    for path in paths:
        for value in EDGE:
            for action in ("replace", "delete"):
                lock = mutate(copy.deepcopy(base), path, action, copy.deepcopy(value), "")
                assert is_valid_lock(lock) == schema_valid(lock), (path, action, value)
                checked += 1
        for key in KEYS:
            for action in ("add", "rename"):
                lock = mutate(copy.deepcopy(base), path, action, 1, key)
                assert is_valid_lock(lock) == schema_valid(lock), (path, action, key)
                checked += 1
    assert checked > 1000
