"""Benchmarks of the Enclave stack; each module runs as ``python -m benchmarks.<name>``."""
