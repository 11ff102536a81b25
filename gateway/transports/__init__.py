"""I/O shells around the sans-I/O protocols: each turns one connection into a `Call`."""
