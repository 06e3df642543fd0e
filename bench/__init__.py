"""Benchmarks of mailflow against the limit of its own stack (see README.md)."""
