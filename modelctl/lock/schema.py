"""The lockfile's JSON Schema as a strict hand check: every read validates, cheaply.

``schemas/lockfile.schema.json`` stays the contract (and the source of the detailed
messages). Importing ``jsonschema`` and building its validator costs about 60 ms, more
than the rest of a warm ``modelctl sync --frozen --offline``, so every read first runs
:func:`is_valid_lock`: the same rules written out (same regular expressions, matched
with ``re.search`` as ``jsonschema`` does; JSON Schema's notions of integer, equality
and type). A property test (tests/unit/test_lockcheck.py) checks that it accepts
exactly what the schema accepts, over valid locks and mutations of them. Only a lock it
refuses is handed to ``jsonschema``, for the message naming every violation.
"""

from __future__ import annotations

import re
from typing import Any, Final

_ASSET_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SHA256_REF: Final = re.compile(r"^sha256:[0-9a-f]{64}$")
_DIGEST: Final = re.compile(r"^(sha256:[0-9a-f]{64}|gitsha1:[0-9a-f]{40})$")
_REPO: Final = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_COMMIT: Final = re.compile(r"^[0-9a-f]{40}$")
_KINDS: Final = ("files", "gguf", "kokoro", "stt", "api")
_REPO_TYPES: Final = ("model", "dataset")
_ROLES: Final = ("file", "model", "tokenizer", "voice", "signature")
_MAX_SIZE: Final = 1099511627776000
_TOP_KEYS: Final = frozenset({"version", "manifest", "assets"})
_ASSET_KEYS: Final = frozenset({"kind", "enabled", "spec", "sources"})
_ASSET_OPTIONAL: Final = frozenset({"signature"})
_SIGNATURE_KEYS: Final = frozenset({"path", "sha256", "method", "identity"})
_METHODS: Final = ("key", "certificate", "sigstore")
_SOURCE_KEYS: Final = frozenset({"repo", "repo_type", "revision", "commit", "files"})
_FILE_KEYS: Final = frozenset({"path", "size", "digest", "role"})
_FILE_OPTIONAL: Final = frozenset({"sha256"})


def is_valid_lock(data: Any) -> bool:
    """True exactly when ``data`` is valid against ``lockfile.schema.json``."""
    if not _obj(data, _TOP_KEYS):
        return False
    version = data["version"]
    if not (_is_number(version) and version == 1):  # "const": 1 (1.0 is equal, True is not)
        return False
    if not _match(_SHA256_REF, data["manifest"]):
        return False
    assets = data["assets"]
    if not isinstance(assets, dict):
        return False
    return all(_match(_ASSET_NAME, name) and _asset(asset) for name, asset in assets.items())


def _asset(a: Any) -> bool:
    return (
        _obj(a, _ASSET_KEYS, _ASSET_OPTIONAL)
        and ("signature" not in a or _signature(a["signature"]))
        and _enum(a["kind"], _KINDS)
        and isinstance(a["enabled"], bool)
        and _match(_SHA256_REF, a["spec"])
        and isinstance(a["sources"], list)
        and all(_source(s) for s in a["sources"])
    )


def _signature(s: Any) -> bool:
    if not _obj(s, _SIGNATURE_KEYS):
        return False
    path, identity = s["path"], s["identity"]
    return (
        isinstance(path, str)
        and 1 <= len(path) <= 1024
        and _match(_SHA256_REF, s["sha256"])
        and _enum(s["method"], _METHODS)
        and isinstance(identity, str)
        and 1 <= len(identity) <= 1024
    )


def _source(s: Any) -> bool:
    revision = s.get("revision") if isinstance(s, dict) else None
    return (
        _obj(s, _SOURCE_KEYS)
        and _match(_REPO, s["repo"])
        and _enum(s["repo_type"], _REPO_TYPES)
        and isinstance(revision, str)
        and 1 <= len(revision) <= 256
        and _match(_COMMIT, s["commit"])
        and isinstance(s["files"], list)
        and all(_file(f) for f in s["files"])
    )


def _file(f: Any) -> bool:
    if not _obj(f, _FILE_KEYS, _FILE_OPTIONAL):
        return False
    if "sha256" in f and not _match(_SHA256_REF, f["sha256"]):
        return False
    path, size = f["path"], f["size"]
    if not (isinstance(path, str) and 1 <= len(path) <= 1024):
        return False
    # oneOf [integer 0..max, null]: the two cannot both hold.
    if size is not None and not (_is_integer(size) and 0 <= size <= _MAX_SIZE):
        return False
    return _match(_DIGEST, f["digest"]) and _enum(f["role"], _ROLES)


def _obj(value: Any, keys: frozenset[str], optional: frozenset[str] = frozenset()) -> bool:
    """An object with all of ``keys``, and nothing else but ``optional`` ones."""
    return isinstance(value, dict) and keys <= value.keys() <= keys | optional


def _match(pattern: re.Pattern[str], value: Any) -> bool:
    return isinstance(value, str) and pattern.search(value) is not None


def _enum(value: Any, allowed: tuple[str, ...]) -> bool:
    return isinstance(value, str) and value in allowed


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    """JSON Schema's integer: an int, or a float with no fractional part (not a bool)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
