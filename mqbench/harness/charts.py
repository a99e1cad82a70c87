"""Inline SVG charts for the html report, drawn from result files only (no script, no assets).

* ``throughput_chart(results)``: publish msgs/s per window over the measured phase, one line per
  (result, cell), from ``cells[].windows``;
* ``latency_cdf_chart(results, histogram)``: a latency-by-percentile plot (HdrHistogram style: the
  x axis spaces 0, 90, 99, 99.9, 99.99 % evenly, i.e. by ``-log10(1 - p)``), one line per (result,
  cell), read from the merged whole-run histogram ``cells[].histograms[histogram]``.

Pure functions from documents to SVG text; the numbers drawn are the numbers in the files.
"""
from __future__ import annotations

import html
import math

from mqbench.harness.histograms import decode_histogram, percentile_us

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 24, 40
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
#: percentiles drawn on the CDF, as "nines" x = -log10(1 - p/100); 99.999 % is the last point.
CDF_PERCENTILES = tuple([p / 10 for p in range(0, 900, 50)] + [90 + p / 10 for p in range(0, 90, 5)]
                        + [99.0, 99.5, 99.9, 99.95, 99.99, 99.999])


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _svg(title: str, series: list[tuple[str, list[tuple[float, float]]]], x_max: float, x_ticks: list[tuple[float, str]],
         x_label: str, y_label: str) -> str:
    y_top = _nice_max(max((y for _, points in series for _, y in points), default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x / x_max if x_max else 0) * plot_w

    def sy(y: float) -> float:
        return TOP + plot_h - (y / y_top) * plot_h

    parts = [f'<svg width="{WIDTH}" height="{HEIGHT + 18 * len(series)}" viewBox="0 0 {WIDTH} '
             f'{HEIGHT + 18 * len(series)}" role="img" aria-label="{html.escape(title)}">',
             f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{html.escape(title)}</text>',
             f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="#333"/>',
             f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#333"/>']
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = y_top * fraction
        parts.append(f'<text x="{LEFT - 6}" y="{sy(y) + 4:.1f}" font-size="10" text-anchor="end">{y:,.6g}</text>')
        parts.append(f'<line x1="{LEFT}" y1="{sy(y):.1f}" x2="{LEFT + plot_w}" y2="{sy(y):.1f}" stroke="#eee"/>')
    for x, label in x_ticks:
        parts.append(f'<text x="{sx(x):.1f}" y="{TOP + plot_h + 14}" font-size="10" text-anchor="middle">'
                     f'{html.escape(label)}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h + 30}" font-size="11" text-anchor="middle">'
                 f'{html.escape(x_label)}</text>')
    parts.append(f'<text x="12" y="{TOP + plot_h / 2:.0f}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 12 {TOP + plot_h / 2:.0f})">{html.escape(y_label)}</text>')
    for index, (name, points) in enumerate(series):
        color = COLORS[index % len(COLORS)]
        if points:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        legend_y = HEIGHT + 18 * index + 4
        parts.append(f'<rect x="{LEFT}" y="{legend_y}" width="12" height="3" fill="{color}"/>')
        parts.append(f'<text x="{LEFT + 18}" y="{legend_y + 5}" font-size="11">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _label(loaded, cell: dict, many: bool) -> str:
    return f"{loaded.folder.name} {cell['name']}" if many else cell["name"]


def throughput_chart(results) -> str:
    many = len(results) > 1
    series, x_max = [], 0.0
    for loaded in results:
        for cell in loaded.doc["cells"]:
            points = []
            for window in cell["windows"]:
                start_s = window.get("window_start_ms", 0) / 1000
                end_s = start_s + window.get("duration_ms", loaded.doc["window_ms"]) / 1000
                points.append(((start_s + end_s) / 2, float(window["throughput_msgs_per_s"])))
                x_max = max(x_max, end_s)
            series.append((_label(loaded, cell, many), points))
    ticks = [(x_max * f, f"{x_max * f:.0f}") for f in (0, 0.25, 0.5, 0.75, 1)] if x_max else []
    return _svg("Publish throughput per window", series, x_max, ticks, "seconds into the measured phase", "msgs/s")


def _nines(percentile: float) -> float:
    return -math.log10(max(1e-9, 1 - percentile / 100))


def latency_cdf_chart(results, histogram: str = "publish_latency") -> str:
    many = len(results) > 1
    series = []
    for loaded in results:
        for cell in loaded.doc["cells"]:
            decoded = decode_histogram(cell["histograms"][histogram], f"{loaded.folder.name}: {histogram}")
            points = []
            if decoded.get_total_count():
                points = [(_nines(p), percentile_us(decoded, p) / 1000.0) for p in CDF_PERCENTILES]
            series.append((_label(loaded, cell, many), points))
    x_max = _nines(99.999)
    ticks = [(_nines(p), label) for p, label in ((0, "0%"), (90, "90%"), (99, "99%"), (99.9, "99.9%"),
                                                  (99.99, "99.99%"), (99.999, "99.999%"))]
    name = histogram.replace("_", " ")
    return _svg(f"{name[0].upper()}{name[1:]} by percentile", series, x_max, ticks, "percentile", "ms")
