"""Runs geobus's ``outbox`` benchmark from a checkout: ``python benchmarks/outbox.py [--quick] [--json]``.

The benchmark itself lives in the package (``geobus._tools.bench.outbox``, its docstring says
what it measures), so that ``geobus bench --only outbox`` runs it from an installed geobus too.
"""

from geobus._tools.bench.outbox import cli

if __name__ == "__main__":
    cli()
