"""Manifest editing (modelctl/edit.py): only the asset's lines change; add then remove is
the identity on bytes, whatever the user's layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from modelctl.errors import ManifestError
from modelctl.lock.edit import add_asset, remove_asset, render_block, unified_diff
from modelctl.lock.manifest import parse_manifest

ROOT = Path(__file__).resolve().parents[2]
NEW = {"kind": "stt", "repo": "org/new", "files": ["model.bin", "*.json"]}


@st.composite
def manifests(draw: st.DrawFn) -> str:
    """Manifest texts in many layouts: comments everywhere, blank-line separators or none,
    2/4-space indents, flow and block lists, trailing keys, CRLF, no final newline."""
    item = draw(st.sampled_from([2, 4]))
    step = draw(st.sampled_from([2, 4]))
    blanks = draw(st.integers(0, 2))
    names = draw(st.lists(st.sampled_from(["stt", "llm", "tts", "vad", "a.b", "x-1"]), unique=True))
    out: list[str] = []
    if draw(st.booleans()):
        out.append("# my models")
    if draw(st.booleans()):
        out.append("version: 1")
    if not names:
        out.append("assets: {}" + draw(st.sampled_from(["", "  # none yet"])))
    else:
        out.append("assets:" + draw(st.sampled_from(["", "   # the models"])))
    pad, inner = " " * item, " " * (item + step)
    for i, name in enumerate(names):
        if i and blanks:
            out.extend([""] * blanks)
        if draw(st.booleans()):
            out.append(f"{pad}# about {name}")
        out.append(f"{pad}{name}:" + draw(st.sampled_from(["", "  # note"])))
        if draw(st.booleans()):
            out.append(f"{inner}description: '{name}: kept as written'")
        out.append(f"{inner}repo: org/{name}" + draw(st.sampled_from(["", "   # pinned later"])))
        if draw(st.booleans()):
            out.append(f'{inner}files: [model.bin,   "*.json"]')
        else:
            out.append(f"{inner}files:")
            seq = inner + " " * draw(st.sampled_from([0, 2]))
            out.extend([f"{seq}- model.bin", f"{seq}- '*.json'"])
        if draw(st.booleans()):
            out.append(f"{inner}# trailing note of {name}")
    if draw(st.booleans()):
        out.append("# end of assets")
    if draw(st.booleans()):
        out.append("endpoint: https://hf-mirror.example")
    nl = draw(st.sampled_from(["\n", "\r\n"]))
    text = nl.join(out)
    return text + nl if draw(st.booleans()) else text


@settings(max_examples=300, deadline=None)
@given(manifests(), st.sampled_from(["new", "zz-last", "a0"]))
def test_add_then_remove_gives_the_same_bytes(text: str, name: str) -> None:
    before = yaml.safe_load(text)
    added = add_asset(text, name, NEW, "m.yaml")
    after = yaml.safe_load(added)
    assert after["assets"][name] == NEW
    assert list(after["assets"])[-1] == name  # appended: key order kept
    assert {k: v for k, v in after["assets"].items() if k != name} == (before["assets"] or {})
    assert remove_asset(added, name, "m.yaml") == text


@settings(max_examples=200, deadline=None)
@given(manifests(), st.data())
def test_remove_drops_exactly_one_asset_and_keeps_other_lines(
    text: str, data: st.DataObject
) -> None:
    before = yaml.safe_load(text)
    if not before["assets"]:
        return
    name = data.draw(st.sampled_from(sorted(before["assets"])))
    removed = remove_asset(text, name, "m.yaml")
    after = yaml.safe_load(removed)
    assert after["assets"] == {k: v for k, v in before["assets"].items() if k != name}
    # Lines are only taken away, never rewritten (but `assets:` gets `{}` when emptied).
    kept = iter(text.splitlines())
    rest = [line for line in removed.splitlines() if not line.startswith("assets:")]
    assert all(any(line == k for k in kept) for line in rest)


def test_the_speech_assistant_manifest_round_trips_and_the_diff_is_only_the_asset() -> None:
    text = (ROOT / "manifests" / "speech-assistant.yaml").read_text()
    added = add_asset(text, "stt2", NEW, "m.yaml")
    diff = unified_diff(text, added, "m.yaml")
    plus = [line for line in diff.splitlines() if line.startswith("+") and line[1:2] != "+"]
    minus = [line for line in diff.splitlines() if line.startswith("-") and line[1:2] != "-"]
    assert minus == []
    assert plus == [
        "+",
        "+  stt2:",
        "+    kind: stt",
        "+    repo: org/new",
        "+    files: [model.bin, '*.json']",
    ]
    assert parse_manifest(added).asset("stt2") is not None
    assert remove_asset(added, "stt2", "m.yaml") == text


def test_removing_the_first_and_the_last_asset_keeps_the_separators() -> None:
    text = "assets:\n  a:\n    repo: o/a\n    files: [x]\n\n  b:\n    repo: o/b\n    files: [x]\n"
    assert remove_asset(text, "a", "m") == "assets:\n  b:\n    repo: o/b\n    files: [x]\n"
    assert remove_asset(text, "b", "m") == "assets:\n  a:\n    repo: o/a\n    files: [x]\n"


def test_removing_the_last_asset_leaves_an_empty_mapping() -> None:
    text = "version: 1\nassets:  # mine\n  a:\n    repo: o/a\n    files: [x]\n"
    assert remove_asset(text, "a", "m") == "version: 1\nassets: {}  # mine\n"


def test_an_existing_name_is_refused() -> None:
    text = "assets:\n  a:\n    repo: o/a\n    files: [x]\n"
    with pytest.raises(ManifestError, match="already exists"):
        add_asset(text, "a", NEW, "m")


def test_removing_an_unknown_name_lists_the_assets() -> None:
    text = "assets:\n  a:\n    repo: o/a\n    files: [x]\n  b:\n    kind: api\n"
    with pytest.raises(ManifestError) as exc:
        remove_asset(text, "zz", "m")
    assert exc.value.expected == "one of: a, b"


@pytest.mark.parametrize(
    "text",
    [
        "assets: {a: {repo: o/a, files: [x]}}\n",  # flow style with content
        "assets: [1, 2]\n",
        "- a\n",
        "version: 1\n",
    ],
)
def test_layouts_that_cannot_be_edited_are_refused(text: str) -> None:
    with pytest.raises(ManifestError):
        add_asset(text, "n", NEW, "m")


def test_a_syntax_error_is_a_manifest_error_with_a_line() -> None:
    with pytest.raises(ManifestError) as exc:
        add_asset("assets:\n  a: [\n", "n", NEW, "m.yaml")
    assert exc.value.where is not None and exc.value.where.startswith("m.yaml:")


def test_render_block_uses_the_files_indentation() -> None:
    spec: dict[str, Any] = {"kind": "gguf", "repo": "o/r", "file": "x.gguf"}
    spec["tokenizer"] = {"repo": "o/t", "files": ["tokenizer.json"]}
    assert render_block("llm", spec, 4, 4) == (
        "    llm:\n"
        "        kind: gguf\n"
        "        repo: o/r\n"
        "        file: x.gguf\n"
        "        tokenizer:\n"
        "            repo: o/t\n"
        "            files: [tokenizer.json]\n"
    )
