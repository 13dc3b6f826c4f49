"""What is on disk: the cache/target layout, records, presence, the partial file,
gc, status, verify."""
