"""How every benchmark prints a figure: one cell format, one ratio format, one table of metrics.

Imports nothing heavy, so that ``geobus bench`` (which runs each benchmark in its
own process) can render their rows without loading the SDK or the local namespace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

RATIO_WIDTH = 8


def cell(value: float | None, unit: str) -> str:
    """A figure as the tables show it: seconds and ms to 2 decimals, µs to 1, rates grouped."""
    if value is None:
        return "-"
    if unit in ("s", "ms"):
        return f"{value:.2f}"
    if unit == "us":
        return f"{value:.1f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def ratio_cell(ratio: float | None, below: float | None = None) -> str:
    """``geobus / plain`` to three figures; ``<below`` when the plain side was cut off."""
    value = ratio if ratio is not None else below
    if value is None:
        return "-"
    text = f"{value:#.3g}" if value < 10 else f"{value:,.0f}"  # 1.00, not 1
    return text if ratio is not None else "<" + text


def metrics_table(
    rows: Sequence[dict[str, Any]], *, name_width: int = 44, unit_width: int = 10, labels: tuple[str, str] = ("geobus", "plain")
) -> list[str]:
    """The lines of a table of ``Metric.as_json`` rows: name, unit, both figures, ratio, note."""
    ours, theirs = labels
    lines = [f"{'metric':<{name_width}}{'unit':<{unit_width}}{ours:>11}{theirs:>11}{'ratio':>{RATIO_WIDTH}}   note"]
    for row in rows:
        ratio = ratio_cell(row["ratio"], row["extra"].get("ratio_below"))
        lines.append(
            f"{row['name']:<{name_width}}{row['unit']:<{unit_width}}{cell(row['geobus'], row['unit']):>11}"
            f"{cell(row['plain'], row['unit']):>11}{ratio:>{RATIO_WIDTH}}   {row['note']}"
        )
    return lines


def machine_line(m: dict[str, Any], rest: str) -> str:
    """A table's first line: the machine's cores and Python (``common.machine``), then ``rest``."""
    return f"machine: {m['cores']} cores ({m['usable_cores']} usable), {m['implementation']} {m['python']}, {rest}"


def report_text(
    result: dict[str, Any],
    *,
    about: Sequence[str],
    ratio: str,
    notes: Sequence[str] = (),
    machine: str | None = None,
    name_width: int = 44,
    labels: tuple[str, str] = ("geobus", "plain"),
) -> str:
    """A benchmark's table as every benchmark prints it: the machine (then ``machine``, the
    platform by default), geobus's version and the rounds, ``about`` the run, what ``ratio``
    divides, the metrics, ``notes``, and what was skipped and why."""
    m = result["machine"]
    return "\n".join([
        machine_line(m, machine or m["platform"]),
        f"geobus {m['geobus']}; best of {result['rounds']} round(s); took {result['elapsed_s']:.0f} s"
        + (" (--quick)" if result["quick"] else ""),
        *about,
        f"ratio = {ratio}",
        "",
        *metrics_table(result["metrics"], name_width=name_width, labels=labels),
        *([""] if notes else []),
        *notes,
        *(f"skipped {name}: {why}" for name, why in result.get("skipped", {}).items()),
    ])
