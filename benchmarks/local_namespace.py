"""Runs geobus's ``local_namespace`` benchmark from a checkout: ``python benchmarks/local_namespace.py [--quick] [--json]``.

The benchmark itself lives in the package (``geobus._tools.bench.local_namespace``, its docstring says
what it measures), so that ``geobus bench --only local_namespace`` runs it from an installed geobus too.
"""

from geobus._tools.bench.local_namespace import cli

if __name__ == "__main__":
    cli()
