"""Runs geobus's ``latency`` benchmark from a checkout: ``python benchmarks/latency.py [--quick] [--json]``.

The benchmark itself lives in the package (``geobus._tools.bench.latency``, its docstring says
what it measures), so that ``geobus bench --only latency`` runs it from an installed geobus too.
"""

from geobus._tools.bench.latency import cli

if __name__ == "__main__":
    cli()
