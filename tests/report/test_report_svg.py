"""Inline SVG charts: labels from data are escaped, axes cover the data."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import pytest

from recsae.report import svg

NS = "{http://www.w3.org/2000/svg}"


def test_chart_labels_from_data_are_escaped_and_the_svg_is_well_formed():
    out = svg.bar_chart(["<script>x</script>", "a & b"], {"s\"1": [0.5, None], "s2": [1.0, 2.0]},
                        title="t <b>")
    root = ET.fromstring(out)  # well-formed XML: nothing unescaped broke it
    texts = [e.text for e in root.iter(f"{NS}text")]
    assert "<script>x</script>" in texts and "a & b" in texts
    assert not list(root.iter("script")) and not list(root.iter(f"{NS}script"))
    assert len(list(root.iter(f"{NS}rect"))) == 3 + 2  # three bars (None skipped) + legend


def test_histogram_draws_one_bar_per_non_empty_bin_and_the_marker():
    out = svg.histogram([0, 0.5, 1.0, 1.5], {"x": [2, 0, 5]}, title="h", x_label="v", marker=1.0)
    root = ET.fromstring(out)
    assert len(list(root.iter(f"{NS}rect"))) == 2
    assert [e.get("class") for e in root.iter(f"{NS}line")].count("mark") == 1


def test_line_chart_skips_missing_points_and_dashes_named_series():
    out = svg.line_chart([0, 1, 2], {"a": [1.0, None, 3.0], "b": [0.5, 0.5, 0.5]},
                         title="c", x_label="x", dashed={"b"})
    root = ET.fromstring(out)
    lines = list(root.iter(f"{NS}polyline"))
    assert len(lines[0].get("points").split()) == 2
    assert lines[1].get("stroke-dasharray") and not lines[0].get("stroke-dasharray")


@pytest.mark.parametrize(("lo", "hi"), [(0, 1), (0, 37), (-4, 0), (0.0012, 0.0031)])
def test_nice_ticks_are_evenly_spaced_and_span_the_range(lo, hi):
    ticks = svg.nice_ticks(lo, hi)
    steps = {round(b - a, 12) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1
    step = steps.pop()
    assert ticks[0] >= lo - 1e-12 and ticks[0] - lo < step
    assert ticks[-1] <= hi + 1e-12 and hi - ticks[-1] < step
