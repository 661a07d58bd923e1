"""Runs geobus's ``seenset`` benchmark from a checkout: ``python benchmarks/seenset.py [--quick] [--json]``.

The benchmark itself lives in the package (``geobus._tools.bench.seenset``, its docstring says
what it measures), so that an installed geobus can run it too (``python -m geobus._tools.bench.seenset``).
"""

from geobus._tools.bench.seenset import cli

if __name__ == "__main__":
    cli()
