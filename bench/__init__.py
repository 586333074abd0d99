"""Benchmarks (not timed tests): each module has `main() -> dict` and prints its numbers and ratios.
Run them all with `python -m bench` (or `make bench`)."""
