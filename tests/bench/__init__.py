"""pytest-benchmark micro-benchmarks (skipped in the normal test run; see docs/benchmarking.md)."""
