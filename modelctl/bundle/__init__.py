"""Offline bundles: the archive format and the sync Source that installs from one."""
