"""Measurement scripts whose figures go into the README; run each with `python -m benchmarks.<name>`."""
