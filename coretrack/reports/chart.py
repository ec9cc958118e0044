"""Geometry of the Activity chart and the Compare report's lines, in SVG user units: pure arithmetic on
the reports' rows (no SQL, no request), drawn by templates/reports/activity.html and compare.html."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# One bucket of the Activity report: {"bucket": "2026-03-01" | "2026-03-01 13:00", "accesses", "unique_opens"}.
Bucket = Mapping[str, Any]

LEFT, TOP, RIGHT, BOTTOM = 48, 12, 8, 36  # margins around the plot: the y labels, the x labels and legend
MAX_X_LABELS = 8


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    row: Bucket


@dataclass(frozen=True)
class Chart:
    """Bars of accesses and a line of unique opens over the same buckets."""

    width: int
    height: int
    left: int  # x of the y axis
    right: int  # x where the plot ends
    top: int
    bottom: float  # y of the x axis
    bars: list[Bar]
    line: str  # "x,y x,y ..." for a <polyline>
    y_ticks: list[tuple[float, int]]  # (y, value), from the axis up
    x_labels: list[tuple[float, str]]  # (x, text)


def peak(rows: Sequence[Bucket]) -> int:
    """The most accesses in one bucket (0 for none)."""
    return max([0, *(int(row["accesses"]) for row in rows)])


def nice_ceiling(value: int) -> int:
    """1, 2 or 5 times a power of ten, at least ``value`` (and at least 1): the top of the y axis."""
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def chart(rows: Sequence[Bucket], by: str, width: int = 720, height: int = 260) -> Chart:
    """``rows`` in time order; ``by``: "day" or "hour", which part of the bucket labels the x axis."""
    plot_width, plot_height = width - LEFT - RIGHT, height - TOP - BOTTOM
    bottom = TOP + plot_height
    highest = nice_ceiling(peak(rows))  # unique opens never exceed accesses
    band = plot_width / max(1, len(rows))

    def y(value: int) -> float:
        return round(bottom - value * plot_height / highest, 1)

    bars, points = [], []
    for index, row in enumerate(rows):
        x = LEFT + index * band
        bars.append(Bar(round(x + band * 0.15, 1), y(row["accesses"]), round(band * 0.7, 2),
                        round(bottom - y(row["accesses"]), 1), row))
        points.append(f"{round(x + band / 2, 1)},{y(row['unique_opens'])}")
    every = max(1, -(-len(rows) // MAX_X_LABELS))
    short = slice(11, 16) if by == "hour" else slice(5, 10)  # "13:00" or "03-01"
    x_labels = [(round(LEFT + (index + 0.5) * band, 1), row["bucket"][short])
                for index, row in enumerate(rows) if index % every == 0]
    y_ticks = sorted({(y(value), value) for value in (0, highest // 2, highest)}, reverse=True)
    return Chart(width, height, LEFT, width - RIGHT, TOP, bottom, bars, " ".join(points), y_ticks, x_labels)


# Each compared email's line: a colour and a dash pattern, so that the lines differ without colour too.
LINE_STYLES = (("#1f5fbf", ""), ("#c2410c", "7 4"), ("#15803d", "2 3"), ("#7c3aed", "10 3 2 3"))


@dataclass(frozen=True)
class Line:
    points: str  # "x,y x,y ..." for a <polyline>
    colour: str
    dashes: str  # stroke-dasharray ("" for a solid line)


@dataclass(frozen=True)
class LineChart:
    """One line per series over the same buckets (the Compare report's emails, day by day after sending)."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: float
    lines: list[Line]
    y_ticks: list[tuple[float, int]]
    x_labels: list[tuple[float, str]]


def line_chart(series: Sequence[Sequence[int]], labels: Sequence[str], width: int = 720,
               height: int = 260) -> LineChart:
    """``series``: one list of values per line, each as long as ``labels`` (the x axis); at most
    len(LINE_STYLES) of them."""
    plot_width, plot_height = width - LEFT - RIGHT, height - TOP - BOTTOM
    bottom = TOP + plot_height
    highest = nice_ceiling(max([0, *(value for values in series for value in values)]))
    band = plot_width / max(1, len(labels))

    def y(value: int) -> float:
        return round(bottom - value * plot_height / highest, 1)

    lines = [Line(" ".join(f"{round(LEFT + (index + 0.5) * band, 1)},{y(value)}" for index, value in enumerate(values)),
                  *LINE_STYLES[number]) for number, values in enumerate(series)]
    every = max(1, -(-len(labels) // MAX_X_LABELS))
    x_labels = [(round(LEFT + (index + 0.5) * band, 1), label) for index, label in enumerate(labels)
                if index % every == 0]
    y_ticks = sorted({(y(value), value) for value in (0, highest // 2, highest)}, reverse=True)
    return LineChart(width, height, LEFT, width - RIGHT, TOP, bottom, lines, y_ticks, x_labels)
