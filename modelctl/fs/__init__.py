"""Files on disk: checked opens, paths, atomic writes, locks."""
