"""A simulated year under chaos: the invariants of docs/rotation.md over 365 days (docs/reliability.md).

`python -m tests.chaos --seed N --days D --targets T` runs it; tests/test_chaos.py runs a month in `make test`.
"""
