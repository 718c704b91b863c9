"""Plots as inline SVG: grouped bars with optional ranges and samples. No script, no fonts to
fetch; each plot is an `<svg data-plot=...>` with a `<title>` that names it.

Pure: data in, markup out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#3b6ea8", "#d9822b", "#5a9e4b", "#a8433b", "#7b5ea8", "#8c8c3b")
WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 30, 70


@dataclass
class Bars:
    """values[group][series] -> bar height; ranges: (low, high) whiskers; samples: dots."""

    plot: str  # the data-plot attribute
    title: str
    unit: str
    groups: list[str]
    series: list[str]
    values: dict[str, dict[str, float]]
    ranges: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    samples: dict[str, dict[str, Sequence[float]]] = field(default_factory=dict)
    scale: float = 1.0  # values are divided by this for display (e.g. 1e9 for Gbit/s)
    digits: int = 2


def nice_max(v: float) -> float:
    """A round axis maximum at or above v."""
    if v <= 0:
        return 1.0
    exp = 10.0 ** math.floor(math.log10(v))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * exp >= v:
            return float(m * exp)
    return 10.0 * exp


def _fmt(v: float, digits: int) -> str:
    return f"{v:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{v:.0f}"


def render(b: Bars) -> str:
    top_value = 0.0
    for g in b.groups:
        for s in b.series:
            top_value = max(top_value, b.values.get(g, {}).get(s, 0.0) / b.scale,
                            b.ranges.get(g, {}).get(s, (0.0, 0.0))[1] / b.scale,
                            *(x / b.scale for x in b.samples.get(g, {}).get(s, ())))
    ymax = nice_max(top_value)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y(v: float) -> float:
        return TOP + plot_h - (v / ymax) * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" data-plot="{escape(b.plot)}" role="img" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" class="plot">',
           f"<title>{escape(b.title)}</title>",
           f'<text x="{LEFT}" y="18" class="plot-title">{escape(b.title)}</text>']
    for i in range(5):  # grid and ticks
        v = ymax * i / 4
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   'class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end" class="tick">'
                   f"{_fmt(v, 2)}</text>")
    out.append(f'<text x="14" y="{TOP + plot_h / 2:.0f}" transform="rotate(-90 14 '
               f'{TOP + plot_h / 2:.0f})" text-anchor="middle" class="axis">{escape(b.unit)}</text>')
    group_w = plot_w / max(1, len(b.groups))
    bar_w = min(48.0, group_w * 0.8 / max(1, len(b.series)))
    for gi, g in enumerate(b.groups):
        x0 = LEFT + gi * group_w + (group_w - bar_w * len(b.series)) / 2
        for si, s in enumerate(b.series):
            if s not in b.values.get(g, {}):
                continue
            v = b.values[g][s] / b.scale
            x = x0 + si * bar_w
            h = max(1.0, y(0) - y(v))  # a zero still shows as a line
            label = f"{g} — {s}: {_fmt(v, b.digits)} {b.unit}"
            out.append(f'<rect class="bar" x="{x + 2:.1f}" y="{y(0) - h:.1f}" '
                       f'width="{bar_w - 4:.1f}" height="{h:.1f}" '
                       f'fill="{PALETTE[si % len(PALETTE)]}"><title>{escape(label)}</title></rect>')
            cx = x + bar_w / 2
            if g in b.ranges and s in b.ranges[g]:
                lo, hi = (r / b.scale for r in b.ranges[g][s])
                out.append(f'<path class="range" d="M{cx:.1f} {y(lo):.1f}V{y(hi):.1f}'
                           f'M{cx - 6:.1f} {y(lo):.1f}h12M{cx - 6:.1f} {y(hi):.1f}h12"/>')
            for xv in b.samples.get(g, {}).get(s, ()):
                out.append(f'<circle class="sample" cx="{cx:.1f}" cy="{y(xv / b.scale):.1f}" r="3"/>')
            label_y = min(y(v), y(b.ranges.get(g, {}).get(s, (0, 0))[1] / b.scale)) - 4
            out.append(f'<text x="{cx:.1f}" y="{label_y:.1f}" text-anchor="middle" '
                       f'class="value">{_fmt(v, b.digits)}</text>')
        out.append(f'<text x="{LEFT + (gi + 0.5) * group_w:.1f}" y="{TOP + plot_h + 16}" '
                   f'text-anchor="middle" class="group">{escape(g)}</text>')
    out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(0):.1f}" y2="{y(0):.1f}" '
               'class="axis-line"/>')
    if len(b.series) > 1:
        lx = LEFT
        for si, s in enumerate(b.series):
            out.append(f'<rect x="{lx}" y="{HEIGHT - 22}" width="12" height="12" '
                       f'fill="{PALETTE[si % len(PALETTE)]}"/>')
            out.append(f'<text x="{lx + 16}" y="{HEIGHT - 12}" class="legend">{escape(s)}</text>')
            lx += 24 + 8 * len(s)
    out.append("</svg>")
    return "\n".join(out)
