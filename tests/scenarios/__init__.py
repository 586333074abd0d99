"""The scenario library: each failure of the CycleCloud guide as a twin scenario, with what `validate` says and
what `remediate` does, written to docs/scenarios/ from the CLI's real output (`python -m tests.scenarios
--write`) and checked against it by tests/test_scenarios.py."""
