"""Runs geobus's ``fleet`` benchmark from a checkout: ``python benchmarks/fleet.py [--quick] [--json]``.

The benchmark itself lives in the package (``geobus._tools.bench.fleet``, its docstring says
what it measures), so that an installed geobus can run it too (``python -m geobus._tools.bench.fleet``).
"""

from geobus._tools.bench.fleet import cli

if __name__ == "__main__":
    cli()
