"""modelctl: ML model files as a locked, reproducible dependency.

Three phases: ``modelctl lock`` resolves a YAML manifest into a lockfile of commits,
sizes and digests; ``modelctl sync`` downloads exactly the locked files, verified;
:mod:`modelctl.runtime` hands out only locked, verified paths at run time.
"""

__version__ = "0.1.0"
