"""The manifest and the lockfile: pure data, parsing, schema, plan math."""
