"""The report page: escaping of untrusted text, sections present or replaced by a note, size; and the
report of a real small run (``tiny_run``): its latent rows, splice table, latent views and controls."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_fake_run import ALL_PARTS, EVIL_CONCEPT, EVIL_RULE, EVIL_TITLES

from recsae.errors import DataError
from recsae.report import load_run, render_report, write_report
from recsae.report.latents import embed_json

SECTIONS = ("overview", "dataset", "model", "splice", "interpretability", "steering", "latents")


class _Page(HTMLParser):
    """Collects elements, attributes, the text outside scripts, and the script bodies."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append((self._in_script, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            attrs, body = self.scripts[-1]
            self.scripts[-1] = (attrs, body + data)
        else:
            self.text.append(data)


def parse(page: str) -> _Page:
    p = _Page()
    p.feed(page)
    p.close()
    return p


def main_html(page: str) -> str:
    """The page without its embedded script (which holds the view's 'missing' class names)."""
    return page[: page.index('<script type="application/json"')]


@pytest.mark.parametrize("layout", ["stages", "brief"])
def test_hostile_titles_and_rules_render_as_text_not_markup(fake_run, layout):
    page = render_report(load_run(fake_run(layout=layout)))
    p = parse(page)
    tags = [t for t, _ in p.tags]
    # Only the page's own two scripts (data + app); no injected img/i element, no event handler.
    assert [a.get("type") for a, _ in p.scripts] == ["application/json", None]
    assert "img" not in tags and "i" not in tags
    assert not any(k.startswith("on") for _, attrs in p.tags for k in attrs)
    text = "".join(p.text)
    for title in EVIL_TITLES[:3]:
        assert title in text  # shown literally in the latent table
    assert EVIL_RULE in text
    assert EVIL_CONCEPT in text  # a steering concept name


def test_embedded_json_cannot_close_its_script_and_round_trips(fake_run):
    page = render_report(load_run(fake_run()))
    p = parse(page)
    attrs, raw = p.scripts[0]
    assert attrs["id"] == "recsae-data"
    assert "<" not in raw and ">" not in raw and "&" not in raw
    data = json.loads(raw)
    assert set(EVIL_TITLES) <= set(data["strings"])
    by_id = {lat["id"]: lat for lat in data["latents"]}
    assert by_id[2]["rule"] == EVIL_RULE


def test_embed_json_escapes_markup_and_turns_nan_into_null():
    text = embed_json({"t": "</script><b>&", "x": float("nan"), "y": [float("inf"), 1.5]})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"t": "</script><b>&", "x": None, "y": [None, 1.5]}


def test_script_is_allowed_by_hash_in_the_content_security_policy(fake_run):
    import base64
    import hashlib

    page = render_report(load_run(fake_run()))
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    script = parse(page).scripts[1][1]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp  # nothing is fetched: no network, no external files


@pytest.mark.parametrize("layout", ["stages", "brief"])
def test_full_run_has_every_section_chart_and_no_missing_note(fake_run, layout):
    page = render_report(load_run(fake_run(layout=layout)))
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in page
    body = main_html(page)
    assert 'class="missing"' not in body
    assert page.count('<tr data-latent="') == 30
    assert "How often each latent fires" in body  # activation-frequency histogram
    assert "Validated confidence per unit" in body
    assert "Share of alive units: interpretable and faithful" in body and "Concept share in the top 10" in body
    assert "<polyline" in body  # a dose-response curve
    splice = body[body.index('<section id="splice">') : body.index('<section id="interpretability">')]
    for label in ("original model", "spliced: SAE reconstruction", "spliced + error term",
                  "mean-ablated", "random SAE (untrained)"):
        assert f"<tr><th>{label}</th>" in splice
    data = json.loads(parse(page).scripts[0][1])
    lat = {x["id"]: x for x in data["latents"]}[7]
    assert lat["lo"] is not None and lat["f1"] is not None and lat["hist"] is not None
    assert len(lat["ex"]) == 5 and all(x["ti"] for x in lat["ex"])


@pytest.mark.parametrize(
    ("parts", "notes"),
    [
        (("summary",), ["interpretation.parquet was not found"]),
        (("interpretation", "examples"), ["summary.json was not found", "splice.json was not found",
                                          "steer.json was not found"]),
        (("summary", "interpretation"), ["latent_examples.json was not found"]),
        ((), ["summary.json was not found", "interpretation.parquet was not found"]),
    ],
)
def test_missing_files_replace_their_sections_with_a_note(fake_run, parts, notes):
    page = render_report(load_run(fake_run(parts=parts)))
    body = main_html(page)
    for note in notes:
        assert note in body
    for sid in SECTIONS:  # every section keeps its anchor, so the navigation never breaks
        assert f'<section id="{sid}">' in body


def test_splice_table_falls_back_to_summary_json(fake_run):
    page = render_report(load_run(fake_run(parts=("summary",))))
    splice = page[page.index('<section id="splice">') : page.index('<section id="interpretability">')]
    assert "random SAE (untrained)" in splice and "mean-ablated" in splice
    assert "99.4 %" in splice  # spliced NDCG@10 0.179 / original 0.18


def test_steering_effects_reach_the_latent_view_data(fake_run):
    page = render_report(load_run(fake_run()))
    data = json.loads(parse(page).scripts[0][1])
    by_id = {lat["id"]: lat for lat in data["latents"]}
    assert by_id[1]["fx"][0]["drop"] == pytest.approx(0.2)  # ablation row
    assert by_id[7]["fx"] == []
    studies = {fx["study"] for fx in by_id[0]["fx"]}
    assert studies == {"ablation", "steering toward genre=Horror"}
    assert by_id[4]["fx"][0]["study"] == "damped for popularity debiasing"


def test_report_of_2048_latents_stays_small(fake_run):
    run = fake_run(n_latents=2048)
    path = write_report(run)
    size = path.stat().st_size
    assert size < 5_000_000, size
    data = json.loads(parse(path.read_text()).scripts[0][1])
    assert len(data["latents"]) == 2048
    assert max(len(lat["ex"]) for lat in data["latents"]) <= 5
    assert max(len(x["ti"]) for lat in data["latents"] for x in lat["ex"]) <= 8


def test_write_report_default_path_and_readable_mode(fake_run):
    run = fake_run()
    path = write_report(run)
    assert path == run / "report" / "index.html"
    assert path.stat().st_mode & 0o044 == 0o044
    assert path.read_text(encoding="utf-8").startswith("<!doctype html>")


def test_missing_run_folder_is_a_data_error(tmp_path: Path):
    with pytest.raises(DataError, match="run folder not found"):
        load_run(tmp_path / "nope")


def test_corrupt_summary_names_the_file_and_line(fake_run):
    run = fake_run(parts=ALL_PARTS)
    (run / "summary.json").write_text('{\n  "dataset": oops\n}')
    with pytest.raises(DataError, match=r"summary\.json, line 2"):
        load_run(run)


@pytest.mark.parametrize(
    ("damage", "message"),
    [("bytes", r"interpretation\.parquet: not a readable Parquet file"),
     ("no latent column", r"interpretation\.parquet, field 'latent': expected a 'latent' column")],
)
def test_damaged_interpretation_table_names_the_file(fake_run, damage, message):
    import pandas as pd

    run = fake_run(parts=ALL_PARTS)
    path = run / "interpretation.parquet"
    if damage == "bytes":
        path.write_bytes(path.read_bytes()[:100])
    else:
        pd.DataFrame({"rule": ["x"]}).to_parquet(path)
    with pytest.raises(DataError, match=message):
        load_run(run)


def test_examples_without_activations_are_flagged_as_having_no_histograms(fake_run):
    from report_fake_run import histories, interpretation, titles

    from recsae.report import write_latent_examples

    run = fake_run(parts=("interpretation",))
    write_latent_examples(run, interpretation(30), histories(), titles())
    data = json.loads(parse(render_report(load_run(run))).scripts[0][1])
    assert data["hasExamples"] and not data["hasHistograms"]
    assert all(lat["hist"] is None and lat["ex"] for lat in data["latents"])


def test_steering_table_shows_the_ndcg_change_with_its_interval_when_the_run_has_one(fake_run):
    page = render_report(load_run(fake_run()))
    assert "-2.8 % [-7.0, +1.0]" in page  # 0.175 / 0.18, interval 0.93-1.01
    assert "-5.6 %</td>" in page  # the concept without an interval shows the change alone


def test_a_model_below_most_popular_gets_a_warning_note_and_one_above_none(fake_run):
    run = fake_run(parts=("summary",))
    assert 'class="warning"' not in main_html(render_report(load_run(run)))
    summary = json.loads((run / "summary.json").read_text())
    summary["model"]["below_most_popular"] = True
    summary["baseline"] = {"most_popular": {"test": {"ndcg@10": 0.25}}}
    (run / "summary.json").write_text(json.dumps(summary))
    model = main_html(render_report(load_run(run)))
    model = model[model.index('<section id="model">'):]
    model = model[: model.index("</section>")]
    assert '<p class="warning" role="note">Warning: this model does not beat the most-popular ranker' in model
    assert "0.18" in model and "0.25" in model and "below_most_popular" not in model


# ---------- the report of a real run (tests/conftest.py: tiny_run) ----------

def _sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', main_html(page), flags=re.S))


def _text(fragment: str) -> str:
    """The visible text of an HTML fragment, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _num(cell: str) -> float:
    """A splice-table cell as a number ('76.3 %' -> 0.763)."""
    text = _text(cell).replace(",", "")
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


@pytest.mark.slow
def test_real_run_report_has_every_part_and_no_missing_note(tiny_run):
    page = (tiny_run / "report" / "index.html").read_text(encoding="utf-8")
    sections = _sections(page)
    assert set(SECTIONS) <= set(sections)
    assert 'class="missing"' not in main_html(page)  # every input of every section was written


@pytest.mark.slow
def test_real_run_latent_table_has_a_row_per_latent_with_its_rule_and_marks(tiny_run):
    import pandas as pd

    page = (tiny_run / "report" / "index.html").read_text(encoding="utf-8")
    table = pd.read_parquet(tiny_run / "interpretation.parquet").set_index("latent")
    summary = json.loads((tiny_run / "summary.json").read_text())["interpret"]
    rows = dict(re.findall(r'<tr data-latent="(\d+)">(.*?)</tr>', _sections(page)["latents"], flags=re.S))
    assert sorted(map(int, rows)) == sorted(table.index)
    cells = {int(j): re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S) for j, row in rows.items()}
    alive = {j for j in cells if "dead: never fires" not in cells[j][1]}
    assert alive == set(table.index[table["alive"]])
    assert len(alive) == summary["n_alive"] > 0
    ticks = {j for j in cells if "✓" in cells[j][1]}
    assert ticks == set(table.index[table["interpretable"].astype(bool)])
    assert len(ticks) == summary["n_interpretable"] > 0
    causal = {j for j in cells if ">causal</span>" in cells[j][1]}
    assert causal == set(table.index[table["faithful"].fillna(False).astype(bool)])
    for j in alive:
        rule = table.at[j, "rule"]
        label = html.unescape(re.sub(r'<span class="tag[^"]*"[^>]*>.*?</span>', "", cells[j][1]))
        if j in ticks:
            assert isinstance(rule, str) and rule and label == rule, j
        elif isinstance(rule, str) and rule:
            assert label == rule, j
        titles = [str(t) for t in table.at[j, "top_item_titles"]][:3]
        assert _text(cells[j][6]) == " · ".join(titles), j  # the decoder's top items


@pytest.mark.slow
def test_real_run_splice_table_is_splice_json_and_the_summary(tiny_run):
    page = (tiny_run / "report" / "index.html").read_text(encoding="utf-8")
    from recsae.report.html import CONDITIONS

    splice = json.loads((tiny_run / "splice.json").read_text())["conditions"]
    summary = json.loads((tiny_run / "summary.json").read_text())["sae"]
    body = re.search(r"<tbody>(.*?)</tbody>", _sections(page)["splice"], flags=re.S)
    assert body is not None
    rows = {_text(label): re.findall(r'<td class="num">(.*?)</td>', cells)
            for label, cells in re.findall(r"<tr><th>(.*?)</th>(.*?)</tr>", body.group(1), flags=re.S)}
    assert set(rows) == {CONDITIONS[name] for name in splice} and len(splice) == 5
    base = splice["original"]["metrics"]["ndcg@10"]
    for name, c in splice.items():
        cells = rows[CONDITIONS[name]]
        want = [c["metrics"]["ndcg@10"], c["metrics"]["hr@10"], c["metrics"]["ndcg@10"] / base,
                c["top10_overlap"], c["kl"], c["fvu"], c["cosine"]]
        got = [_num(v) for v in cells[:7]]
        assert got == pytest.approx(want, rel=1e-3, abs=1e-12), name  # shown to 4 significant digits
        if c["sae"] is None:
            assert [_text(v) for v in cells[7:]] == ["—"] * 3, name
        else:
            assert _num(cells[7]) == pytest.approx(c["sae"]["l0"], rel=1e-3), name
            assert _num(cells[8]) == pytest.approx(c["sae"]["dead_fraction"], abs=5e-4), name
    # the summary's sae part is the same table
    assert summary["spliced"]["test"] == splice["spliced"]["metrics"]
    assert summary["random_sae"]["top10_overlap"] == splice["random_sae"]["top10_overlap"]
    assert summary["mean_ablated"]["kl"] == splice["mean_ablated"]["kl"]
    assert summary["fvu"] == splice["spliced"]["fvu"]


@pytest.mark.slow
def test_real_run_latent_views_carry_their_examples(tiny_run):
    page = (tiny_run / "report" / "index.html").read_text(encoding="utf-8")
    from recsae.report.latents import MAX_EXAMPLES, MAX_TITLES

    assert '<aside id="latent-view"' in page
    payload = json.loads(parse(page).scripts[0][1])
    examples = json.loads((tiny_run / "report_data" / "latent_examples.json").read_text())["latents"]
    views = {lat["id"]: lat for lat in payload["latents"]}
    shown = 0
    for j, ex in examples.items():
        view, want = views[int(j)], ex["examples"][:MAX_EXAMPLES]
        assert [(x["u"], x["t"]) for x in view["ex"]] == [(x["user"], x["position"]) for x in want], j
        for got, x in zip(view["ex"], want, strict=True):
            assert [payload["strings"][i] for i in got["ti"]] == x["recent_titles"][-MAX_TITLES:], j
        if view["ex"]:  # a latent that fires: its activation histogram too
            assert view["hist"] is not None and sum(view["hist"]["c"]) > 0, j
            shown += 1
    assert shown >= 1 and payload["hasExamples"] and payload["hasHistograms"]


@pytest.mark.slow
def test_real_run_shows_every_control_beside_the_sae(tiny_run):
    page = (tiny_run / "report" / "index.html").read_text(encoding="utf-8")
    from recsae.report.html import FAMILIES

    interp = json.loads((tiny_run / "summary.json").read_text())["interpret"]
    text = _text(_sections(page)["interpretability"])
    for family in ("neurons", "random_sae", "random_model_sae"):
        assert family in interp, family
        assert FAMILIES[family] in text, family
    assert f"alive latents {interp['n_alive']}" in text
    assert f"interpretable latents {interp['n_interpretable']}" in text
    assert f"faithful latents {interp['faithful']['sae']['n']}" in text
    assert "shuffled explanations: median confidence" in text
    assert "latents found again with another seed" in text
    splice_text = _text(_sections(page)["splice"])
    assert "mean-ablated" in splice_text and "random SAE (untrained)" in splice_text
