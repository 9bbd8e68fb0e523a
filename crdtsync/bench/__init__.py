"""Benchmarks run by ``crdtsync bench``: every figure is a median of several runs, and every
comparison a ratio of figures measured side by side in the same run."""
