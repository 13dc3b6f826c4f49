"""``oci://REGISTRY/NAME[:TAG|@sha256:HEX]``: parsed and printed here only (no I/O).

The grammar is the OCI distribution spec's: a repository name is lowercase components
(``[a-z0-9]+`` joined by ``.``, ``_``, ``__`` or dashes) separated by ``/``; a tag is
``[A-Za-z0-9_][A-Za-z0-9._-]{0,127}``. The registry is always explicit (there is no
default registry: a model must never go to a place the user did not name).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

from modelctl.errors import InputError

SCHEME: Final = "oci://"
DEFAULT_TAG: Final = "latest"
_COMPONENT: Final = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE: Final = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DIGEST_RE: Final = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST_RE: Final = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?$"
)


@dataclass(frozen=True)
class Reference:
    """One artifact in one repository of one registry, by tag or by manifest digest."""

    registry: str  # host[:port], as typed (the key of credentials in auth files)
    name: str  # the repository, e.g. "team/speech-models"
    tag: str | None = None
    digest: str | None = None  # "sha256:<hex>" of the manifest

    @property
    def host(self) -> str:
        if self.registry.startswith("["):
            return self.registry[1 : self.registry.index("]")]
        return self.registry.partition(":")[0]

    @property
    def port(self) -> int | None:
        _, colon, port = self.registry.rsplit("]", 1)[-1].partition(":")
        return int(port) if colon else None

    @property
    def is_loopback(self) -> bool:
        host = self.host.lower()
        if host == "localhost" or host.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def version(self) -> str:
        """What to ask the manifest endpoint for: the digest if known, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.name, self.tag, digest)

    def __str__(self) -> str:
        text = f"{SCHEME}{self.registry}/{self.name}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse(text: str) -> Reference:
    """Parse ``oci://REGISTRY/NAME[:TAG][@sha256:HEX]``; InputError saying what is wrong."""
    if not text.startswith(SCHEME):
        raise _bad(text, f"it does not start with {SCHEME}")
    rest = text[len(SCHEME) :]
    registry, slash, path = rest.partition("/")
    if not slash or not registry:
        raise _bad(text, "it names no registry and repository (oci://REGISTRY/NAME)")
    if not _HOST_RE.match(registry):
        raise _bad(text, f"{registry!r} is not a host[:port]")
    port = registry.rsplit("]", 1)[-1].rpartition(":")[2] if ":" in registry else ""
    if port and not 0 < int(port) < 65536:
        raise _bad(text, f"port {port} is out of range")
    digest = None
    if "@" in path:
        path, _, digest = path.partition("@")
        if not DIGEST_RE.match(digest):
            raise _bad(text, f"{digest!r} is not a manifest digest (sha256:<64 lowercase hex>)")
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
        if not TAG_RE.match(tag):
            raise _bad(text, f"{tag!r} is not a valid tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})")
    if not NAME_RE.match(path):
        raise _bad(
            text,
            f"{path!r} is not a repository name (lowercase letters, digits and . _ - "
            "separators, components joined by /)",
        )
    if len(registry) + 1 + len(path) > 255:
        raise _bad(text, "the registry and repository name are longer than 255 characters")
    return Reference(registry, path, tag, digest)


def _bad(text: str, why: str) -> InputError:
    return InputError(
        f"not an OCI reference: {why}",
        where=text,
        expected="oci://REGISTRY[:PORT]/NAME[:TAG][@sha256:DIGEST], e.g. "
        "oci://registry.example:5000/team/models:v1",
    )
