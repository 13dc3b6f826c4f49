"""Repo-only test servers: a docker-registry runner, a CONNECT proxy, a test CA."""
