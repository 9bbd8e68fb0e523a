"""What a benchmark produces: samples per series, summarised, printed, saved and drawn.

Every benchmark returns a ``BenchResult``: named series of samples (one per run), each with a
unit, plus headline figures (ratios of medians measured side by side in the same run). The
CLI prints it as a table and writes it as JSON; ``plot`` draws it with matplotlib.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crdtsync.errors import ConfigError

__all__ = ["BenchOptions", "BenchResult", "Progress", "Series", "machine", "plot"]

Progress = Callable[[str], None]  # told one line per finished step of a long run


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What the command line tunes; each benchmark documents which it uses."""

    runs: int = 3
    peers: tuple[int, ...] = ()  # room sizes; empty: the benchmark's own defaults
    edits: int = 1000  # edits per peer, where a benchmark types

    def __post_init__(self) -> None:
        if self.runs < 1 or self.edits < 1 or any(count < 2 for count in self.peers):
            raise ConfigError(
                f"need --runs >= 1, --edits >= 1 and every --peers >= 2 "
                f"(got {self.runs}, {self.edits}, {list(self.peers)})"
            )

    def peers_or(self, *defaults: int) -> tuple[int, ...]:
        return self.peers or defaults


@dataclass(frozen=True, slots=True)
class Series:
    """One measured quantity, one sample per run."""

    unit: str
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "median": self.median,
            "min": min(self.samples),
            "max": max(self.samples),
            "samples": self.samples,
        }


@dataclass(slots=True)
class BenchResult:
    """A benchmark's figures; ``headline`` keys go to the top level of the JSON."""

    benchmark: str
    params: dict[str, Any]
    series: dict[str, Series] = field(default_factory=dict)
    headline: dict[str, float] = field(default_factory=dict)

    def add(self, label: str, unit: str, value: float) -> None:
        """Record one run's ``value`` of series ``label`` (made on first use)."""
        series = self.series.setdefault(label, Series(unit))
        if series.unit != unit:
            raise ValueError(f"series {label!r} is in {series.unit}, not {unit}")
        series.samples.append(value)

    def median(self, label: str) -> float:
        return self.series[label].median

    def lead_with(self, suffix: str) -> None:
        """Put the headline figures whose keys end in ``suffix`` first, under their keys
        without it: the room (``_n4``, ``_n32_c20``) the benchmark is judged by."""
        leading = {
            key.removesuffix(suffix): value
            for key, value in self.headline.items()
            if key.endswith(suffix)
        }
        self.headline = {**leading, **self.headline}

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            **self.params,
            "runs": max((len(series.samples) for series in self.series.values()), default=0),
            **self.headline,
            "series": {label: series.to_json() for label, series in self.series.items()},
            "machine": machine(),
        }

    def table(self) -> str:
        width = max((len(label) for label in self.series), default=6) + 2
        lines = [f"{'series':<{width}}{'unit':<8}{'median':>12}{'min':>12}{'max':>12}"]
        for label, series in self.series.items():
            row = series.to_json()
            lines.append(
                f"{label:<{width}}{series.unit:<8}"
                + "".join(f"{_figure(row[key]):>12}" for key in ("median", "min", "max"))
            )
        lines.extend(f"{key}: {_figure(value)}" for key, value in self.headline.items())
        return "\n".join(lines)


def _figure(value: float) -> str:
    """Four significant digits, without a wall of zeros for tiny or huge values."""
    return f"{value:.4g}"


def machine() -> str:
    """Where the figures were measured, for the JSON and the README."""
    return (
        f"{platform.machine()} {platform.system()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores"
    )


def plot(result: BenchResult, path: Path) -> None:
    """Draw medians as bars with min-max whiskers, one panel per unit, into PNG ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display here, nor wanted
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib: pip install 'crdtsync[bench]'") from exc
    units = list(dict.fromkeys(series.unit for series in result.series.values()))
    figure, axes = plt.subplots(
        len(units), 1, figsize=(8, 1.2 + 0.45 * len(result.series)), squeeze=False
    )
    for axis, unit in zip(axes[:, 0], units, strict=True):
        rows = [(label, s) for label, s in result.series.items() if s.unit == unit]
        medians = [s.median for _, s in rows]
        whiskers = _whiskers(s for _, s in rows)
        axis.barh([label for label, _ in rows], medians, xerr=whiskers, capsize=3)
        axis.invert_yaxis()
        if min(medians) > 0 and max(medians) >= 20 * min(medians):
            axis.set_xscale("log")  # contenders orders of magnitude apart: show the ratios
            axis.xaxis.set_minor_formatter(NullFormatter())
            unit += " (log scale)"
        axis.set_xlabel(unit)
    axes[0, 0].set_title(f"{result.benchmark}: median of runs, whiskers min-max")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _whiskers(series: Iterable[Series]) -> list[list[float]]:
    rows = [(s.median - min(s.samples), max(s.samples) - s.median) for s in series]
    return [[low for low, _ in rows], [high for _, high in rows]]
