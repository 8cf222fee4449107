"""Charts drawn on the server as inline SVG: no script, nothing to vendor, nothing the CSP has to allow.

Each series differs in three ways, so a chart reads without colour: its line's dash pattern, its point marker
(circle, square, triangle, diamond, cross, bar), and a colour (Okabe-Ito, safe for colour-blind readers). The legend
repeats the three next to the series' name, every point carries its number as a tooltip (``<title>``), and the
page shows the same numbers as a table under the chart.
"""

from __future__ import annotations

import math
from datetime import date
from html import escape

from markupsafe import Markup

COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
DASHES = ("", "8 4", "2 3", "12 3 3 3", "4 4", "1 6", "14 6")
MARKERS = ("circle", "square", "triangle", "diamond", "cross", "bar", "circle")

W, H = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 44, 40


def _nice_max(value: int) -> int:
    """The y axis' top: four equal whole steps of a round size (1, 2, 2.5 or 5 × a power of ten) that reach
    ``value``, so the five grid lines read evenly (0, 2, 4, 6, 8 — not 0, 1, 2, 3, 5)."""
    if value <= 4:
        return 4
    raw = value / 4
    magnitude = 10 ** int(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        step = m * magnitude
        if step == int(step) and step >= raw:
            return int(step) * 4
    return math.ceil(raw) * 4


def _marker(kind: str, x: float, y: float, colour: str) -> str:
    if kind == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"/>'
    if kind == "square":
        return f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" fill="{colour}"/>'
    if kind == "triangle":
        return f'<path d="M{x:.1f} {y - 4.5:.1f}L{x + 4.5:.1f} {y + 3.5:.1f}L{x - 4.5:.1f} {y + 3.5:.1f}Z" fill="{colour}"/>'
    if kind == "diamond":
        return f'<path d="M{x:.1f} {y - 5:.1f}L{x + 5:.1f} {y:.1f}L{x:.1f} {y + 5:.1f}L{x - 5:.1f} {y:.1f}Z" fill="{colour}"/>'
    if kind == "cross":
        return (f'<path d="M{x - 4:.1f} {y - 4:.1f}L{x + 4:.1f} {y + 4:.1f}M{x - 4:.1f} {y + 4:.1f}L{x + 4:.1f} '
                f'{y - 4:.1f}" stroke="{colour}" stroke-width="2"/>')  # fmt: skip
    return f'<rect x="{x - 1.5:.1f}" y="{y - 5:.1f}" width="3" height="10" fill="{colour}"/>'


def line_chart(chart_id: str, title: str, days: list[date], series: list[tuple[str, list[int]]]) -> Markup:
    """A line per series over the days; ``title`` names the chart for assistive technology."""
    n = len(days)
    top = _nice_max(max((v for _, values in series for v in values), default=0))
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: int) -> float:
        return TOP + plot_h - plot_h * v / top

    out = [
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {W} {H}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-t {escape(chart_id)}-d" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(chart_id)}-t">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-d">One line per series ({escape(", ".join(s for s, _ in series))}), '
        f"per day from {days[0].isoformat() if days else ''} to {days[-1].isoformat() if days else ''}; "
        "the table below the chart has every number.</desc>",
    ]
    # Grid and y axis: five steps.
    for k in range(5):
        value = top * k // 4
        gy = y(value)
        out.append(
            f'<line x1="{LEFT}" y1="{gy:.1f}" x2="{W - RIGHT}" y2="{gy:.1f}" stroke="#c8cdd2" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end" font-size="11" fill="#333">{value:,}</text>'
        )
    # X axis labels: at most ~10.
    every = max(1, math.ceil(n / 10))
    for i, d in enumerate(days):
        if i % every == 0 or i == n - 1:
            out.append(f'<text x="{x(i):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle" font-size="11" fill="#333">'
                       f"{d.day} {d:%b}</text>")  # fmt: skip
    # Legend along the top.
    lx = LEFT
    for k, (label, _) in enumerate(series):
        colour, dash, marker = COLOURS[k % 7], DASHES[k % 7], MARKERS[k % 7]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<line x1="{lx}" y1="16" x2="{lx + 28}" y2="16" stroke="{colour}" stroke-width="2.5"{dash_attr}/>'
        )
        out.append(_marker(marker, lx + 14, 16, colour))
        out.append(f'<text x="{lx + 34}" y="20" font-size="12" fill="#111">{escape(label)}</text>')
        lx += 44 + 7 * len(label)
    # The series.
    show_points = n <= 62
    for k, (label, values) in enumerate(series):
        colour, dash, marker = COLOURS[k % 7], DASHES[k % 7], MARKERS[k % 7]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        out.append(f'<g class="series"><polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"'
                   f"{dash_attr}/>")  # fmt: skip
        if show_points:
            for i, v in enumerate(values):
                out.append(f"<g>{_marker(marker, x(i), y(v), colour)}"
                           f"<title>{escape(label)}, {days[i].isoformat()}: {v:,}</title></g>")  # fmt: skip
        out.append("</g>")
    out.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{W - RIGHT}" y2="{TOP + plot_h}" stroke="#333"/>')
    out.append("</svg>")
    return Markup("".join(out))
