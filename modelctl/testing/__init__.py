"""Test support: a local Hub-compatible server and real model assets for it."""
