"""Read a lockfile without PyYAML when its bytes are exactly what ``modelctl lock`` writes.

Start-up time (issue 19): importing PyYAML costs more than reading a lock. A lockfile is
written by ``yaml.safe_dump`` in block style with a fixed shape, so most locks use a small
subset of YAML: mappings, sequences of mappings, and plain scalars (ints, ``true``/
``false``, ``null``, and strings that YAML reads back as the same string).

:func:`load_plain` parses that subset and then *renders the result again* with
:func:`render_plain`; the data is used only when the rendering equals the text byte for
byte. :func:`render_plain` writes a string plain only when it is certain YAML reads it as
that very string (else it gives up), and writes exactly what ``yaml.safe_dump`` writes
(both are checked by property tests against PyYAML). So whenever :func:`load_plain`
returns data, ``yaml.safe_load`` of the same text returns the same data; anything else
(quotes, comments, flow style, another indentation, a string YAML could read as a number)
returns ``None`` and the caller reads the text with PyYAML, as before.

Nothing is cached and nothing is written: the text alone decides.
"""

from __future__ import annotations

import re
from typing import Any, Final

# A string written plain: letters, digits and a few marks that are not YAML indicators
# where they stand (no space, so no ': ' or ' #'); never ending with ':'. One that does not
# start with a letter must hold a letter that no YAML 1.1 number or timestamp has (a
# commit such as 41c95b5...: 'c'); the words YAML 1.1 reads as booleans, null, infinity
# or NaN are excluded below. Anything else is left to PyYAML.
_PLAIN: Final = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_./+@:-]*")
# Letters no YAML 1.1 int, float or timestamp holds; a-f only without an x (0x1F is an int).
_NOT_NUMERIC: Final = re.compile(r"[G-SU-WYg-su-wy]")
_NOT_HEX: Final = re.compile(r"[ACDFacdf]")
_SPECIAL: Final = frozenset(
    (
        "yes",
        "Yes",
        "YES",
        "no",
        "No",
        "NO",
        "true",
        "True",
        "TRUE",
        "false",
        "False",
        "FALSE",
        "on",
        "On",
        "ON",
        "off",
        "Off",
        "OFF",
        "null",
        "Null",
        "NULL",
        ".inf",
        ".Inf",
        ".INF",
        ".nan",
        ".NaN",
        ".NAN",
    )
)
_INT: Final = re.compile(r"0|-?[1-9][0-9]{0,30}")
_MAX_PLAIN: Final = 1000  # longer strings: PyYAML might fold them; leave them to it
_MAX_DEPTH: Final = 16


class _GiveUp(Exception):
    """Not in the subset: the caller reads the text with PyYAML."""


def _not_numeric(value: str) -> bool:
    if _NOT_NUMERIC.search(value) is not None:
        return True
    return "x" not in value and "X" not in value and _NOT_HEX.search(value) is not None


def _scalar(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if type(value) is int and _INT.fullmatch(str(value)):
        return str(value)
    if (
        type(value) is str
        and len(value) <= _MAX_PLAIN
        and _PLAIN.fullmatch(value) is not None
        and not value.endswith(":")
        and value not in _SPECIAL
        and (value[0].isalpha() or _not_numeric(value))
    ):
        return value
    raise _GiveUp


def _mapping(data: dict[Any, Any], indent: int, out: list[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise _GiveUp
    pad = " " * indent
    for key, value in data.items():
        if type(key) is not str or ":" in key:
            raise _GiveUp  # keys are names (assets, fields): no ':' to split on
        head = f"{pad}{_scalar(key)}:"
        if type(value) is dict:
            if not value:
                out.append(head + " {}")
            else:
                out.append(head)
                _mapping(value, indent + 2, out, depth + 1)
        elif type(value) is list:
            if not value:
                out.append(head + " []")
            else:
                out.append(head)
                _sequence(value, indent, out, depth + 1)  # safe_dump: no indent for "- "
        else:
            out.append(f"{head} {_scalar(value)}")


def _sequence(items: list[Any], indent: int, out: list[str], depth: int) -> None:
    pad = " " * indent
    for item in items:
        if type(item) is not dict or not item:
            raise _GiveUp  # only sequences of non-empty mappings (what a lock holds)
        start = len(out)
        _mapping(item, indent + 2, out, depth + 1)
        out[start] = f"{pad}- " + out[start][indent + 2 :]


def render_plain(data: dict[str, Any]) -> str | None:
    """``yaml.safe_dump(data, sort_keys=False, default_flow_style=False,
    allow_unicode=True, width=4096)`` when ``data`` is in the subset, else ``None``."""
    out: list[str] = []
    try:
        _mapping(data, 0, out, 0)
    except _GiveUp:
        return None
    if not out:
        return None  # safe_dump writes "{}\n"
    return "\n".join(out) + "\n"


def _value(text: str) -> Any:
    if text == "true":
        return True
    if text == "false":
        return False
    if text == "null":
        return None
    if text == "{}":
        return {}
    if text == "[]":
        return []
    if _INT.fullmatch(text):
        return int(text)
    return text  # render_plain decides whether YAML would read it so


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _parse_mapping(lines: list[str], i: int, indent: int) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    while i < len(lines) and _indent(lines[i]) == indent:
        line = lines[i][indent:]
        if line.startswith("- "):
            break
        key, sep, rest = line.partition(":")
        if not sep or key in result:
            raise _GiveUp
        i += 1
        if rest:
            if not rest.startswith(" "):
                raise _GiveUp
            result[key] = _value(rest[1:])
        elif i < len(lines) and _indent(lines[i]) > indent:
            result[key], i = _parse_mapping(lines, i, _indent(lines[i]))
        elif i < len(lines) and _indent(lines[i]) == indent and lines[i][indent:].startswith("- "):
            result[key], i = _parse_sequence(lines, i, indent)
        else:
            raise _GiveUp  # "key:" with nothing below is null in YAML; not written so
    return result, i


def _parse_sequence(lines: list[str], i: int, indent: int) -> tuple[list[Any], int]:
    items: list[Any] = []
    while i < len(lines) and _indent(lines[i]) == indent and lines[i][indent:].startswith("- "):
        lines[i] = " " * (indent + 2) + lines[i][indent + 2 :]
        item, i = _parse_mapping(lines, i, indent + 2)
        items.append(item)
    return items, i


def load_plain(text: str) -> dict[str, Any] | None:
    """The data of ``text`` when it is exactly :func:`render_plain` of it, else ``None``."""
    if not text.endswith("\n"):
        return None
    lines = text[:-1].split("\n")
    try:
        data, end = _parse_mapping(lines, 0, 0)
    except (_GiveUp, RecursionError):
        return None
    if end != len(lines):
        return None
    return data if render_plain(data) == text else None
