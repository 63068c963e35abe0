"""Benchmarks of the cluster_conf hot paths on a large generated configuration: `make bench` (python -m bench).

`bench.generate` builds the configuration; `bench.__main__` times the cases and prints the table. The method
and the latest figures are in docs/performance.md.
"""
