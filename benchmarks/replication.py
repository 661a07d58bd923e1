"""Runs geobus's ``replication`` benchmark from a checkout: ``python benchmarks/replication.py [--quick] [--json]``.

The benchmark itself lives in the package (``geobus._tools.bench.replication``, its docstring says
what it measures), so that ``geobus bench --only replication`` runs it from an installed geobus too.
"""

from geobus._tools.bench.replication import cli

if __name__ == "__main__":
    cli()
