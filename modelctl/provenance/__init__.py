"""Provenance: OpenSSF Model Signing (OMS) signatures, checked against the lock's SHA-256s."""
