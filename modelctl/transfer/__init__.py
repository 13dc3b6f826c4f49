"""URLs and bytes: HTTP transports, retries, single and segmented downloads. Knows no Hub."""
