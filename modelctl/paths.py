"""Path safety: every repo path is checked here before it names anything on disk."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from modelctl.errors import InputError, UnsafePathError


def check_relpath(path: str, *, where: str, error: type[InputError] = UnsafePathError) -> str:
    """Accept only a plain relative POSIX path that stays inside its folder.

    Refused: empty, absolute (``/x``, ``C:x``), ``..`` or ``.`` parts, empty parts,
    backslashes, NUL and other control characters.
    """
    problem = _problem(path)
    if problem:
        raise error(
            f"unsafe path {path!r}: {problem}",
            where=where,
            hint="use a relative path inside the repo, with / as separator and no '..'",
        )
    return path


def _problem(path: str) -> str | None:
    if not path:
        return "empty"
    if any(ord(c) < 32 or c == "\x7f" for c in path):
        return "contains a control character"
    if "\\" in path:
        return "contains a backslash"
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return "is absolute"
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' part"
    return None


def safe_join(root: Path, relpath: str, *, where: str) -> Path:
    """``root / relpath`` after checking that it cannot escape ``root``."""
    check_relpath(relpath, where=where)
    return root.joinpath(*PurePosixPath(relpath).parts)
