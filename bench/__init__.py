"""Load generation and benchmarks: ``python -m bench --help``."""
