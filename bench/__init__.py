"""Benchmarks: each prints absolute figures and ratios measured in the same run."""
