"""The lockfile reader without PyYAML (modelctl.lock.plainyaml): whatever it accepts,
PyYAML reads the same; whatever it renders, ``yaml.safe_dump`` renders the same."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from modelctl.lock import lockfile
from modelctl.lock.plainyaml import load_plain, render_plain
from modelctl.lock.types import Lock
from tests.support.strategies import locks

# Strings with every character that changes how YAML reads a scalar.
_TRICKY = st.text(
    alphabet=st.sampled_from(list("aAeExXbBtTzZcy09._-/+@:#'\"!&*?|>%`~{}[], \t\n=<é")),
    max_size=12,
)
_WORDS = st.sampled_from(
    ["yes", "No", "ON", "off", "null", "Null", "~", ".inf", ".NaN", "1e3", "0x1F", "0o17",
     "1_000", "12:30", "1:20:30", "2001-12-14", "2001-12-14t21:59:43.10-05:00", "0b101",
     "+1", "-1", "1.", ".5", "y", "n", "<<", "=", "a:", "a: b", "a #b", "- a", "@a",
     "41c95b527d1272ba268d81d9601f0b5d7d87ca51", "1234567890", "0123", "sha256:0e5"]
)  # fmt: skip
_SCALARS = st.one_of(
    _TRICKY, _WORDS, st.booleans(), st.none(), st.integers(min_value=-(10**40), max_value=10**40)
)
_KEYS = st.one_of(_TRICKY, _WORDS)


def _data(depth: int = 3) -> st.SearchStrategy[dict[str, Any]]:
    if depth == 0:
        return st.dictionaries(_KEYS, _SCALARS, max_size=3)
    inner = _data(depth - 1)
    values = st.one_of(_SCALARS, inner, st.lists(inner, max_size=3))
    return st.dictionaries(_KEYS, values, max_size=4)


def _dump(data: Any) -> str:
    return yaml.safe_dump(
        data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096
    )


@settings(max_examples=400)
@given(_data())
@example({"commit": "41c95b527d1272ba268d81d9601f0b5d7d87ca51", "files": [{"size": 3}]})
@example({"a": [{"b": {}}, {"c": []}], "d": None})
def test_what_render_plain_writes_is_what_safe_dump_writes_and_reads_back(
    data: dict[str, Any],
) -> None:
    text = render_plain(data)
    if text is None:
        return
    assert text == _dump(data)
    assert yaml.safe_load(text) == data
    assert load_plain(text) == data


@settings(max_examples=300)
@given(locks())
def test_a_rendered_lock_is_read_without_pyyaml_and_equals_what_pyyaml_reads(lock: Lock) -> None:
    text = lockfile.render(lock)
    body = text[len(lockfile.HEADER) :]
    plain = load_plain(body)
    assert plain is None or plain == yaml.safe_load(body)
    assert lockfile.parse(text) == lockfile.normalize(lock)  # read plain or by PyYAML


_EDITS = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=10_000),
        st.integers(min_value=0, max_value=3),
        st.text(alphabet=st.sampled_from(list("ab0: -'\"#\n{}[]|>&*!.")), max_size=3),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=400)
@given(locks(), _EDITS)
def test_an_edited_lock_is_read_plain_only_when_pyyaml_reads_the_same(
    lock: Lock, edits: list[tuple[int, int, str]]
) -> None:
    text = lockfile.render(lock)[len(lockfile.HEADER) :]
    for at, cut, insert in edits:
        at %= len(text) + 1
        text = text[:at] + insert + text[at + cut :]
    plain = load_plain(text)
    if plain is None:
        return
    assert plain == yaml.safe_load(text)


def test_what_the_subset_leaves_to_pyyaml() -> None:
    # Quoted, flow style, comments, aliases, other indentation, a number-like string:
    for text in (
        "a: 'x'\n",
        "a: {b: 1}\n",
        "a: 1 # c\n",
        "a: &x 1\nb: *x\n",
        "a:\n   b: 1\n",
        "a:\n- b: 1\n  c: 2\n  d: 3\n- 7\n",
        "a: 0123\n",
        "a: 1.5\n",
        "a: yes\n",
        "a: b\na: c\n",
        "a:\n",
        "a: b",
        "a: b\n\n",
        "",
    ):
        assert load_plain(text) is None, text


def test_a_changed_value_is_read_as_changed() -> None:
    text = "commit: 41c95b527d1272ba268d81d9601f0b5d7d87ca51\nfiles:\n- path: a/b.bin\n  size: 5\n"
    assert load_plain(text) == yaml.safe_load(text)
    changed = text.replace("a/b.bin", "a/c.bin")
    assert load_plain(changed) == yaml.safe_load(changed)
    assert load_plain(changed) != load_plain(text)
