"""Temporal workflows. Deterministic: no I/O, clock, randomness or threads; all I/O is in activities."""
