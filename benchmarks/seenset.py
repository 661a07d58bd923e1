"""Runs geobus's ``seenset`` benchmark from a checkout: ``python benchmarks/seenset.py [--quick] [--json]``.

The benchmark itself lives in the package (``geobus._bench.seenset``, its docstring says
what it measures), so that an installed geobus can run it too (``python -m geobus._bench.seenset``).
"""

from geobus._bench.seenset import cli

if __name__ == "__main__":
    cli()
