"""Placeholder: filled in by the estimator work of issue 4."""
