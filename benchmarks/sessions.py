"""Runs geobus's ``sessions`` benchmark from a checkout: ``python benchmarks/sessions.py [--quick] [--json]``.

The benchmark itself lives in the package (``geobus._tools.bench.sessions``, its docstring says
what it measures), so that an installed geobus can run it too (``python -m geobus._tools.bench.sessions``).
"""

from geobus._tools.bench.sessions import cli

if __name__ == "__main__":
    cli()
