"""The local Hub, public for tests and users' CI.

- :mod:`modelctl.testing.repos`: the repos served from a folder (commits, hashes, JSON);
- :mod:`modelctl.testing.faults`: the failures it injects on demand;
- :mod:`modelctl.testing.hub`: the server (:class:`~modelctl.testing.hub.LocalHub`), its
  request log, and ``python -m modelctl.testing.hub --root DIR --port 0``.

Repo-only test servers (a docker-registry runner, a CONNECT proxy, a test CA) live in
``tests/support/servers``; the real model assets and the demo live in ``scripts/``.
"""
