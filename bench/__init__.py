"""Benchmarks that print ratios measured in one run (ours vs a baseline)."""
