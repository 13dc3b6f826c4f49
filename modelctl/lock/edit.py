"""Edit ``modelctl.yaml`` as text: add or remove one asset, keeping everything else byte-exact.

The user's comments, key order, quoting, blank lines and indentation stay as they were:
only the lines of the one asset change. The asset's lines are found from the YAML node
tree (PyYAML's C composer, as every read does); the new asset's block is rendered by
ruamel.yaml in the file's own indentation; then the edited text is parsed again and must
hold exactly the data intended, or the edit is refused before anything is written.

Layout rules (so that ``add`` then ``remove`` gives back the same bytes):

- An asset's lines run from its key (and the comment lines at the key's column right above
  it) to its last line of content, plus the deeper-indented comments after it. Blank lines
  and comments at the key's column after it belong to what follows.
- ``add`` appends the asset after the last one, separated by a blank line when the assets
  are; ``remove`` drops the asset's lines and one blank line that separated it.
- ``assets: {}`` becomes a block mapping on ``add`` and comes back on removing the last.
- A file's trailing newline (or its absence) and its line endings are kept.
"""

from __future__ import annotations

import difflib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from modelctl.errors import ManifestError
from modelctl.lock.yamldoc import load_yaml


@dataclass(frozen=True)
class _Span:
    """Lines [start, end) of the text's line list."""

    start: int
    end: int


@dataclass(frozen=True)
class _Assets:
    """Where the ``assets:`` mapping and each asset are in the text."""

    key_line: int  # the line of `assets:`
    key_col: int
    flow: bool  # `assets: {...}` (only the empty `{}` can be edited)
    value_end_col: int  # for flow: the column after `}` on key_line
    names: tuple[str, ...]
    key_lines: tuple[int, ...]  # of each asset's key
    item_col: int  # column of the asset keys
    child_step: int  # indentation of an asset's keys below its name
    block_end: int  # first line after the assets mapping's content


def add_asset(text: str, name: str, spec: Mapping[str, Any], source: str) -> str:
    """``text`` with asset ``name`` appended to ``assets:``; ManifestError if it exists."""
    data, layout = _read(text, source)
    if name in layout.names:
        raise ManifestError(
            f"asset {name!r} already exists",
            where=source,
            hint=f"pick another name, or `modelctl remove {name}` first",
        )
    lines = text.splitlines(keepends=True)
    nl = "\r\n" if "\r\n" in text else "\n"
    block = render_block(name, spec, layout.item_col, layout.child_step, nl)
    if layout.flow:
        line = lines[layout.key_line]
        colon = line.index(":", layout.key_col) + 1
        lines[layout.key_line] = line[:colon] + line[layout.value_end_col :]
        at, sep = layout.key_line + 1, ""
    else:
        last = _item_span(lines, layout, len(layout.names) - 1)
        at = last.end
        separated = len(layout.names) > 1 and not lines[last.start - 1].strip()
        sep = nl if separated else ""
    new_text = _splice(lines, at, at, sep + block, text)
    want = dict(data)
    want["assets"] = {**(data.get("assets") or {}), name: dict(spec)}
    return _checked(new_text, want, source)


def remove_asset(text: str, name: str, source: str) -> str:
    """``text`` without asset ``name``; ManifestError naming the assets if there is none."""
    data, layout = _read(text, source)
    if name not in layout.names:
        raise ManifestError(
            f"there is no asset {name!r} to remove",
            where=source,
            expected="one of: " + (", ".join(layout.names) or "(no assets)"),
        )
    lines = text.splitlines(keepends=True)
    i = layout.names.index(name)
    span = _item_span(lines, layout, i)
    start, end = span.start, span.end
    if start > 0 and not lines[start - 1].strip() and start - 1 > layout.key_line:
        start -= 1  # the blank line that separated it from the asset before
    elif start - 1 == layout.key_line and end < len(lines) and not lines[end].strip():
        end += 1  # the first asset: the blank line after it goes with it
    if len(layout.names) == 1:
        line = lines[layout.key_line]
        colon = line.index(":", layout.key_col) + 1
        lines[layout.key_line] = line[:colon] + " {}" + line[colon:]
    new_text = _splice(lines, start, end, "", text)
    want = dict(data)
    want["assets"] = {k: v for k, v in data["assets"].items() if k != name}
    return _checked(new_text, want, source)


def unified_diff(before: str, after: str, path: str) -> str:
    """What ``--dry-run`` prints: a unified diff of the manifest."""
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"{path} (now)",
            tofile=f"{path} (after)",
        )
    )


def render_block(name: str, spec: Mapping[str, Any], col: int, step: int, nl: str = "\n") -> str:
    """``name:`` and its keys in block style at column ``col`` (lists of names in flow style,
    as `files: [a, b]`), rendered by ruamel.yaml."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    def node(value: Any) -> Any:
        if isinstance(value, Mapping):
            m = CommentedMap()
            for k, v in value.items():
                m[k] = node(v)
            return m
        if isinstance(value, list | tuple):
            seq = CommentedSeq(node(v) for v in value)
            if all(isinstance(v, str | int | float | bool) for v in value):
                seq.fa.set_flow_style()
            return seq
        return value

    writer = YAML(typ="rt")
    writer.indent(mapping=step, sequence=step + 2, offset=step)
    writer.width = 4096
    out = io.StringIO()
    writer.dump(node({name: spec}), out)
    pad = " " * col
    return "".join(pad + line + nl for line in out.getvalue().splitlines())


def _read(text: str, source: str) -> tuple[dict[str, Any], _Assets]:
    doc = load_yaml(text, source, ManifestError)
    root = doc.root
    if not isinstance(root, yaml.MappingNode) or not isinstance(doc.data, dict):
        raise ManifestError(
            "the manifest is not a mapping with `assets:`",
            where=source,
            hint="start from `assets: {}`; see manifests/speech-assistant.yaml",
        )
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "assets":
            return doc.data, _layout(text, key, value, source)
    raise ManifestError(
        "the manifest has no `assets:` mapping", where=source, hint="add `assets: {}`"
    )


def _layout(text: str, key: yaml.Node, value: yaml.Node, source: str) -> _Assets:
    if not isinstance(value, yaml.MappingNode):
        raise ManifestError(
            "`assets:` is not a mapping",
            where=f"{source}:{value.start_mark.line + 1}",
            hint="write `assets: {}` or one `name:` block per asset",
        )
    flow = bool(value.flow_style)
    if flow and (value.value or value.end_mark.line != key.start_mark.line):
        raise ManifestError(
            "`assets:` is written in flow style ({...}): modelctl edits only block mappings",
            where=f"{source}:{value.start_mark.line + 1}",
            hint="write one `name:` block per asset (as in docs/manifest.md), then retry",
        )
    names = tuple(str(k.value) for k, _ in value.value)
    key_lines = tuple(k.start_mark.line for k, _ in value.value)
    item_col = value.value[0][0].start_mark.column if value.value else key.start_mark.column + 2
    step = 2
    for _, v in value.value:
        if isinstance(v, yaml.MappingNode) and v.value and not v.flow_style:
            step = max(1, v.value[0][0].start_mark.column - item_col)
            break
    lines = text.splitlines(keepends=True)
    return _Assets(
        key_line=key.start_mark.line,
        key_col=key.start_mark.column,
        flow=flow,
        value_end_col=value.end_mark.column,
        names=names,
        key_lines=key_lines,
        item_col=item_col,
        child_step=step,
        block_end=_block_end(lines, key.start_mark.line, key.start_mark.column),
    )


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_comment(line: str) -> bool:
    return line.lstrip(" ").startswith("#")


def _block_end(lines: list[str], key_line: int, key_col: int) -> int:
    """The first line after ``assets:``'s content: content at the key's column or less."""
    for i in range(key_line + 1, len(lines)):
        line = lines[i]
        if not line.strip() or _is_comment(line):
            continue
        if _indent(line) <= key_col or line.startswith(("---", "...")):
            return i
    return len(lines)


def _item_span(lines: list[str], layout: _Assets, i: int) -> _Span:
    """The lines of asset ``i`` (see the module docstring)."""
    start = layout.key_lines[i]
    while (
        start - 1 > layout.key_line
        and _is_comment(lines[start - 1])
        and _indent(lines[start - 1]) == layout.item_col
    ):
        start -= 1
    end = layout.key_lines[i + 1] if i + 1 < len(layout.key_lines) else layout.block_end
    while end > layout.key_lines[i] + 1:
        line = lines[end - 1]
        if line.strip() and not (_is_comment(line) and _indent(line) <= layout.item_col):
            break
        end -= 1
    return _Span(start, end)


def _splice(lines: list[str], start: int, end: int, insert: str, original: str) -> str:
    """Replace lines [start, end) by ``insert``, keeping whether the text ended in a newline."""
    before = "".join(lines[:start])
    if before and not before.endswith("\n") and insert:
        before += "\r\n" if "\r\n" in original else "\n"
    text = before + insert + "".join(lines[end:])
    if not original.endswith("\n"):
        text = text.rstrip("\r\n")
    elif text and not text.endswith("\n"):
        text += "\r\n" if original.endswith("\r\n") else "\n"
    return text


def _checked(new_text: str, want: dict[str, Any], source: str) -> str:
    """Parse the edited text again: it must hold exactly ``want``, or nothing is written."""
    got = load_yaml(new_text, source, ManifestError).data
    if got != want:
        raise ManifestError(
            "could not edit the manifest without changing other entries (unusual layout)",
            where=source,
            hint="make the change by hand and run `modelctl lock`",
        )
    return new_text
