"""Path safety: every repo path is checked here before it names anything on disk."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TypeVar

from modelctl.errors import InputError, StorageError, UnsafePathError

MAX_PATH_CHARS = 1024  # the lockfile schema's bound
MAX_NAME_BYTES = 255  # NAME_MAX of ext4, xfs, btrfs, tmpfs, overlayfs
T = TypeVar("T")


def check_relpath(path: str, *, where: str, error: type[InputError] = UnsafePathError) -> str:
    """Accept only a plain relative POSIX path that stays inside its folder.

    Refused: empty, absolute (``/x``, ``C:x``), ``..`` or ``.`` parts, empty parts,
    backslashes, NUL and other control characters, paths a lockfile cannot hold (over 1024
    characters) and parts no disk can name (over 255 bytes).
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
    if len(path) > MAX_PATH_CHARS:
        return f"is longer than {MAX_PATH_CHARS} characters"
    if any(len(p.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for p in parts):
        return f"has a part longer than {MAX_NAME_BYTES} bytes, more than a disk's file name holds"
    return None


def find_upwards(name: str, start: Path) -> Path | None:
    """``start/name``, or the same name in the nearest parent folder that has it."""
    for folder in (start, *start.parents):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def safe_join(root: Path, relpath: str, *, where: str) -> Path:
    """``root / relpath`` after checking that it cannot escape ``root``."""
    check_relpath(relpath, where=where)
    return root.joinpath(*PurePosixPath(relpath).parts)


def refuse_symlinks(root: Path, path: Path, *, seen: set[Path] | None = None) -> None:
    """Refuse a symlink anywhere from below ``root`` down to ``path`` (itself included).

    ``path`` must be lexically inside ``root`` (as :func:`safe_join` makes it); ``root``
    itself may be a symlink (the user named it). Parts that do not exist yet are fine: they
    will be created as real folders and files. ``seen`` remembers parts already found to
    be real folders, so checking many files costs one ``lstat`` per folder.
    """
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        if seen is not None and current in seen:
            continue
        try:
            st = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing below exists yet (a file in a folder's place fails on mkdir)
        except OSError as exc:
            raise StorageError(
                f"cannot inspect {current.name}: {exc.strerror}", where=str(current)
            ) from exc
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(
                "a symlink inside the target folder: modelctl writes only real folders and "
                "files there, so that nothing lands outside it and no two locked files share "
                "one inode",
                where=str(current),
                expected=f"a real folder or file below {root}",
                actual=f"a symlink to {_link_target(current)}",
                hint="remove the symlink (or sync into another --target folder); the target "
                "folder itself may be a symlink",
            )
        if seen is not None and stat.S_ISDIR(st.st_mode):
            seen.add(current)


def _link_target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError as exc:  # raced away or unreadable: the refusal stands without it
        return f"? ({exc.strerror})"


def storage_error(message: str, path: Path, exc: OSError) -> StorageError:
    """``message: <reason>`` at ``path``, with what to do about the usual causes: every
    write of a sync (download, record, link, lock file) fails with the same advice."""
    hint = None
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free some disk space and run `modelctl sync` again: it resumes"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "check the permissions of the folder, or pass --target DIR"
    return StorageError(f"{message}: {exc.strerror or exc}", where=str(path), hint=hint)


def in_folder(path: Path, make: Callable[[], T], tries: int = 5) -> T:
    """Create ``path``'s folder, then ``make()`` the entry in it.

    ``modelctl gc --delete`` removes empty folders of a tree while a sync may run: one made
    here can vanish before ``make`` writes into it (FileNotFoundError), so it is made again.
    """
    for attempt in range(tries):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return make()
        except FileNotFoundError:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")
