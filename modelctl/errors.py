"""Every error a user can cause, with its exit code and a hint.

Hierarchy (each class carries ``exit_code``)::

    ModelctlError                    base; never raised directly
    ├── InputError            (2)    bad input: the user must edit a file or an argument
    │   ├── ManifestError            YAML syntax, schema violation, unknown key
    │   ├── LockfileError            unreadable or invalid lockfile
    │   ├── ResolveError             unknown repo / revision / file, glob matching nothing
    │   └── UnsafePathError          a path that would escape its folder
    ├── StaleLockError        (1)    the lockfile does not match the manifest
    ├── VerificationError     (1)    files on disk differ from the lock
    ├── NetworkError          (3)    the Hub or a registry could not be reached or kept failing
    │   ├── AuthError                401/403: a token is missing or lacks access
    │   ├── OfflineError             offline mode, and something must be fetched
    │   └── HubResponseError         the server's answer is malformed (bad JSON, bad values)
    ├── IntegrityError        (4)    downloaded bytes do not match the locked digest
    └── StorageError          (5)    the local disk failed us (full, read-only, ...)

Library code raises these; only the CLI turns them into messages and exit codes.
Lower-layer exceptions are translated at the boundary with ``raise X(...) from exc``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import ClassVar, Final

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_INPUT = 2
EXIT_NETWORK = 3
EXIT_INTEGRITY = 4
EXIT_STORAGE = 5
EXIT_INTERRUPTED = 130

_URL_USERINFO: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")
REDACTED: Final = "***"


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` fit to show: the ``user:password@`` of every URL in it (an endpoint such
    as ``https://user:pw@mirror``) and each of ``secrets`` (tokens) replaced by ***.

    The one redaction helper: every error's :meth:`ModelctlError.render` applies it, and
    the CLI adds the token it was given, so a server that echoes the token into a
    redirect or an error never gets it printed."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return _URL_USERINFO.sub(rf"\1{REDACTED}@", text)


class ModelctlError(Exception):
    """Base class: a message plus where, expected/actual and what to do."""

    exit_code: ClassVar[int] = EXIT_CHECK_FAILED
    label: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        where: str | None = None,
        expected: str | None = None,
        actual: str | None = None,
        hint: str | None = None,
        details: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.expected = expected
        self.actual = actual
        self.hint = hint
        self.details = details

    def render(self) -> str:
        """The message shown to a person: one headline, then labelled lines."""
        head = f"{self.where}: {self.message}" if self.where else self.message
        lines = [f"{self.label}: {head}"]
        lines.extend(f"  - {d}" for d in self.details)
        if self.expected is not None:
            lines.append(f"  expected: {self.expected}")
        if self.actual is not None:
            lines.append(f"  actual:   {self.actual}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return redact("\n".join(lines))

    def __str__(self) -> str:
        return self.render()


class InputError(ModelctlError):
    exit_code = EXIT_INPUT
    label = "input error"


class ManifestError(InputError):
    label = "manifest error"


class LockfileError(InputError):
    label = "lockfile error"


class ResolveError(InputError):
    label = "resolve error"


class UnsafePathError(InputError):
    label = "unsafe path"


class StaleLockError(ModelctlError):
    exit_code = EXIT_CHECK_FAILED
    label = "stale lock"


class VerificationError(ModelctlError):
    exit_code = EXIT_CHECK_FAILED
    label = "verification failed"


class NetworkError(ModelctlError):
    exit_code = EXIT_NETWORK
    label = "network error"


class AuthError(NetworkError):
    label = "access denied"


class OfflineError(NetworkError):
    label = "offline"


class HubResponseError(NetworkError):
    label = "bad answer from the Hub"


class IntegrityError(ModelctlError):
    exit_code = EXIT_INTEGRITY
    label = "integrity error"


class StorageError(ModelctlError):
    exit_code = EXIT_STORAGE
    label = "storage error"


EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_CHECK_FAILED: "a check failed: stale lock (lock --check, sync --locked) or files differ "
    "from the lock (verify)",
    EXIT_INPUT: "bad input: manifest/lockfile syntax or schema, unknown repo, revision or "
    "file, unsafe path, bad option",
    EXIT_NETWORK: "the Hub or a registry could not be reached, denied access, answered "
    "malformed data, or offline mode forbids a needed download",
    EXIT_INTEGRITY: "downloaded bytes did not match the locked digest (after one retry)",
    EXIT_STORAGE: "local storage failed (disk full, permission denied, read-only)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); partial downloads are kept for resume",
}
