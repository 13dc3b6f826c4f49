"""modelctl: ML model files as a locked, reproducible dependency.

Three phases: ``modelctl lock`` resolves a YAML manifest into a lockfile of commits,
sizes and digests; ``modelctl sync`` downloads exactly the locked files, verified;
:mod:`modelctl.runtime` hands out only locked, verified paths at run time.

In process, :func:`provision` plans, syncs what is missing (with progress events) and
returns the runtime's ``LockedModels``; :func:`download_plan` is its dry run. Both are
imported on first use, so ``import modelctl`` stays cheap (no HTTP client loaded).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelctl._version import __version__

if TYPE_CHECKING:
    from modelctl.provisioning import download_plan, provision

__all__ = ["__version__", "download_plan", "provision"]

_LAZY = ("download_plan", "provision")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from modelctl import provisioning

        value = getattr(provisioning, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'modelctl' has no attribute {name!r}")
