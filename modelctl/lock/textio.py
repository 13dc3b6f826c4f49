"""Reading a manifest or lockfile's text, with one clear error (no YAML here: the lock is
often read without PyYAML, see :mod:`modelctl.lock.plainyaml`)."""

from __future__ import annotations

from pathlib import Path

from modelctl.errors import InputError
from modelctl.fs.safeio import read_text_bounded


def read_text(path: Path, error: type[InputError], what: str) -> str:
    try:
        return read_text_bounded(path)
    except FileNotFoundError as exc:
        raise error(
            f"{what} not found", where=str(path), hint=f"create {path.name} or pass its path"
        ) from exc
    except UnicodeDecodeError as exc:
        raise error(f"{what} is not UTF-8 text", where=str(path)) from exc
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror}", where=str(path)) from exc
