"""Benchmarks: each script prints its figures; see docs/benchmarks.md."""
