"""Benchmarks: generation speed (generate) and generators side by side (archs)."""
