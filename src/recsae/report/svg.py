"""Small inline-SVG charts for the report: histograms, grouped bars and line charts.

Colours come from CSS classes (``f0``.. fill, ``k0``.. stroke) whose variables the page defines
for light and dark mode, so the charts need no colours of their own. Every label is escaped:
series names and category labels may come from data.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from html import escape

WIDTH = 460
HEIGHT = 224
_M_LEFT, _M_RIGHT, _M_TOP, _M_BOTTOM = 48, 12, 38, 40


def _num(x: float) -> str:
    """Compact coordinate text (SVG needs no more than 0.1 px)."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


def tick_label(x: float) -> str:
    """Axis tick text: short, without float noise."""
    if x == 0:
        return "0"
    if abs(x) >= 1e4 or abs(x) < 1e-3:
        return f"{x:.0e}".replace("e+0", "e").replace("e-0", "e-")
    return f"{x:.3g}"


def nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else [0.0]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


class _Frame:
    """Plot area and linear scales of one chart."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.left, self.right = _M_LEFT, WIDTH - _M_RIGHT
        self.top, self.bottom = _M_TOP, HEIGHT - _M_BOTTOM

    def x(self, v: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (v - self.x0) / span * (self.right - self.left)

    def y(self, v: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.bottom - (v - self.y0) / span * (self.bottom - self.top)


def _open(title: str, desc: str) -> list[str]:
    return [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        f'<desc>{escape(desc)}</desc>',
        f'<text class="ct" x="{_M_LEFT}" y="15">{escape(title)}</text>',
    ]


def _y_axis(fr: _Frame, ticks: list[float], label: str) -> list[str]:
    out = []
    for t in ticks:
        y = _num(fr.y(t))
        out.append(f'<line class="grid" x1="{fr.left}" x2="{fr.right}" y1="{y}" y2="{y}"/>')
        out.append(f'<text class="tl" x="{fr.left - 4}" y="{y}" dy="0.32em" text-anchor="end">'
                   f"{escape(tick_label(t))}</text>")
    out.append(f'<line class="axis" x1="{fr.left}" x2="{fr.left}" y1="{fr.top}" y2="{fr.bottom}"/>')
    out.append(f'<line class="axis" x1="{fr.left}" x2="{fr.right}" y1="{fr.bottom}" y2="{fr.bottom}"/>')
    if label:
        out.append(f'<text class="al" transform="translate(11 {_num((fr.top + fr.bottom) / 2)}) '
                   f'rotate(-90)" text-anchor="middle">{escape(label)}</text>')
    return out


def _x_label(fr: _Frame, label: str) -> str:
    return (f'<text class="al" x="{_num((fr.left + fr.right) / 2)}" y="{HEIGHT - 4}" '
            f'text-anchor="middle">{escape(label)}</text>')


def _legend(names: Sequence[str], kind: str = "f") -> list[str]:
    """One row of swatches under the title (only when there is more than one series)."""
    if len(names) < 2:
        return []
    out = []
    left = float(_M_LEFT)
    for i, name in enumerate(names):
        out.append(f'<rect class="{kind}{i}" x="{_num(left)}" y="21" width="9" height="9"/>'
                   f'<text class="tl" x="{_num(left + 12)}" y="29">{escape(name)}</text>')
        left += 22 + 5.6 * len(name)  # width estimated from the label length
    return out


def histogram(
    edges: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    x_label: str,
    y_label: str = "count",
    marker: float | None = None,
    x_format: str = "linear",
) -> str:
    """Bars over contiguous bins; several series stand side by side within each bin.

    ``x_format="log10"`` labels tick t as 10^t (the edges are then log10 values).
    """
    names = list(series)
    top = max((max(c, default=0) for c in series.values()), default=0) or 1
    fr = _Frame((edges[0], edges[-1]), (0, top * 1.05))
    out = _open(title, f"histogram over {len(edges) - 1} bins")
    out += _y_axis(fr, nice_ticks(0, top), y_label)
    log = x_format == "log10"
    ticks = (list(range(math.ceil(edges[0]), math.floor(edges[-1]) + 1)) if log
             else nice_ticks(edges[0], edges[-1], 5))
    for t in ticks:
        text = f"1e{t}" if log else tick_label(t)
        out.append(f'<text class="tl" x="{_num(fr.x(t))}" y="{fr.bottom + 13}" '
                   f'text-anchor="middle">{escape(text)}</text>')
    for si, name in enumerate(names):
        cls = f"f{si}"
        for i, c in enumerate(series[name]):
            if c <= 0:
                continue
            # Several series share a bin side by side, so none hides another.
            sub = (fr.x(edges[i + 1]) - fr.x(edges[i])) / len(names)
            x = fr.x(edges[i]) + si * sub
            x2 = x + sub
            y = fr.y(c)
            lo, hi = (10 ** edges[i], 10 ** edges[i + 1]) if log else (edges[i], edges[i + 1])
            out.append(f'<rect class="{cls}" x="{_num(x)}" y="{_num(y)}" '
                       f'width="{_num(max(x2 - x - 1, 0.8))}" height="{_num(fr.bottom - y)}">'
                       f"<title>{escape(name)}: {c:.3g} in [{lo:.3g}, {hi:.3g})</title></rect>")
    if marker is not None and edges[0] <= marker <= edges[-1]:
        mx = _num(fr.x(marker))
        out.append(f'<line class="mark" x1="{mx}" x2="{mx}" y1="{fr.top}" y2="{fr.bottom}"/>')
    out += _legend(names)
    out.append(_x_label(fr, x_label))
    out.append("</svg>")
    return "".join(out)


def bar_chart(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    y_label: str = "",
    value_format: str = "{:.2f}",
) -> str:
    """Grouped vertical bars: one group per category, one bar per series, values printed on top."""
    names = list(series)
    vals = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    top = max(vals, default=0) or 1
    fr = _Frame((0, len(categories)), (0, top * 1.15))
    out = _open(title, f"bar chart of {', '.join(names)}")
    out += _y_axis(fr, nice_ticks(0, top), y_label)
    group = (fr.right - fr.left) / max(len(categories), 1)
    bar = group * 0.7 / max(len(names), 1)
    for ci, cat in enumerate(categories):
        gx = fr.left + ci * group + group * 0.15
        out.append(f'<text class="tl" x="{_num(fr.left + (ci + 0.5) * group)}" y="{fr.bottom + 13}" '
                   f'text-anchor="middle">{escape(cat)}</text>')
        for si, name in enumerate(names):
            v = series[name][ci]
            if v is None or not math.isfinite(v):
                continue
            x, y = gx + si * bar, fr.y(v)
            out.append(f'<rect class="f{si}" x="{_num(x)}" y="{_num(y)}" width="{_num(bar - 1)}" '
                       f'height="{_num(fr.bottom - y)}"><title>{escape(cat)} · {escape(name)}: '
                       f"{escape(value_format.format(v))}</title></rect>")
            out.append(f'<text class="vl" x="{_num(x + bar / 2)}" y="{_num(y - 3)}" '
                       f'text-anchor="middle">{escape(value_format.format(v))}</text>')
    out += _legend(names)
    out.append("</svg>")
    return "".join(out)


def line_chart(
    xs: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    x_label: str,
    y_label: str = "",
    dashed: Collection[str] = (),
) -> str:
    """One polyline with point markers per series over shared x values; ``dashed`` names the
    series drawn with dashed lines (e.g. controls)."""
    names = list(series)
    vals = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    lo, hi = min(vals, default=0.0), max(vals, default=1.0)
    lo = min(lo, 0.0)
    fr = _Frame((min(xs), max(xs)), (lo, (hi if hi > lo else lo + 1) * 1.05))
    out = _open(title, f"line chart of {', '.join(names)} against {x_label}")
    out += _y_axis(fr, nice_ticks(lo, hi), y_label)
    for x in nice_ticks(min(xs), max(xs), 5):
        out.append(f'<text class="tl" x="{_num(fr.x(x))}" y="{fr.bottom + 13}" '
                   f'text-anchor="middle">{escape(tick_label(x))}</text>')
    for si, name in enumerate(names):
        pts = [(x, v) for x, v in zip(xs, series[name], strict=True)
               if v is not None and math.isfinite(v)]
        if not pts:
            continue
        path = " ".join(f"{_num(fr.x(x))},{_num(fr.y(v))}" for x, v in pts)
        dash = ' stroke-dasharray="5 3"' if name in dashed else ""
        out.append(f'<polyline class="k{si}" fill="none" stroke-width="2"{dash} points="{path}"/>')
        for x, v in pts:
            out.append(f'<circle class="f{si}" cx="{_num(fr.x(x))}" cy="{_num(fr.y(v))}" r="3">'
                       f"<title>{escape(name)} at {x:g}: {v:.4g}</title></circle>")
    out += _legend(names)
    out.append(_x_label(fr, x_label))
    out.append("</svg>")
    return "".join(out)
