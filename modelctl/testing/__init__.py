"""Test servers, public for tests and users' CI: the local Hub, and a registry runner.

- :mod:`modelctl.testing.repos`: the repos served from a folder (commits, hashes, JSON);
- :mod:`modelctl.testing.faults`: the failures it injects on demand;
- :mod:`modelctl.testing.hub`: the server (:class:`~modelctl.testing.hub.LocalHub`), its
  request log, and ``python -m modelctl.testing.hub --root DIR --port 0``;
- :mod:`modelctl.testing.registry`: Debian's ``docker-registry`` on loopback, for the OCI
  tests.

The real model assets and the demo are not shipped: they live in ``scripts/``.
"""
