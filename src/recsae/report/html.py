"""Render a run folder as one self-contained HTML page.

Sections: at a glance, dataset, model, splice, interpretability, steering, latents (table and
latent view). A section whose input file is missing is replaced by a short note naming it.
All text that comes from data is escaped; the per-latent data is embedded as JSON with '<', '>'
and '&' escaped, and a Content-Security-Policy allows only the page's own script (by hash),
so neither a title nor a rule can inject markup or script.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any, NamedTuple

from recsae.interpret.explain import FAMILY_LABELS
from recsae.report import svg
from recsae.report.assets import CSS, JS
from recsae.report.latents import VIEW_SHELL, embed_json, latent_payload, latent_table
from recsae.report.run_data import RunData, explained_latents, get, load_run, number
from recsae.rundir import RunDir

CONDITIONS = {
    "original": "original model",
    "spliced": "spliced: SAE reconstruction",
    "spliced_error": "spliced + error term",
    "spliced_plus_error": "spliced + error term",
    "mean_ablated": "mean-ablated",
    "random_sae": "random SAE (untrained)",
}
_METRIC_NAMES = {"hr": "HR", "ndcg": "NDCG", "mrr": "MRR", "recall": "Recall", "map": "MAP",
                 "precision": "Precision"}


# ---------- formatting ----------

def fmt(x: Any, digits: int = 4) -> str:
    """Numbers for tables: integers with separators, floats to ``digits`` significant digits."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    v = number(x)
    if v is None:
        return "—" if x is None or isinstance(x, float) else escape(str(x))
    if v.is_integer() and abs(v) >= 1000:
        return f"{int(v):,}"
    return f"{v:.{digits}g}"


def pct(x: Any) -> str:
    v = number(x)
    return "—" if v is None else f"{100 * v:.3g} %"


def _missing(what: str, fix: str = "") -> str:
    return f'<p class="missing">Not available: {escape(what)}.{" " + escape(fix) if fix else ""}</p>'


def _section(sid: str, title: str, lead: str, body: str) -> str:
    lead_html = f'<p class="lead">{lead}</p>' if lead else ""
    return f'<section id="{sid}"><h2>{escape(title)}</h2>{lead_html}{body}</section>'


def _kv_table(pairs: list[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{escape(k.replace('_', ' '))}</th><td class=\"num\">{fmt(v)}</td></tr>"
                   for k, v in pairs)
    return f"<table>{rows}</table>" if rows else ""


def _card(label: str, value: str, detail: str) -> str:
    return (f'<div class="card"><div class="k">{escape(label)}</div><div class="v">{value}</div>'
            f'<div class="d">{detail}</div></div>')


# ---------- lookups into loosely specified JSON ----------

def _find_key(obj: Any, key: str, depth: int = 3) -> Any:
    """Breadth-first search for ``key`` in nested dicts, preferring shallow and 'test' branches."""
    level = [obj]
    for _ in range(depth + 1):
        nxt = []
        for d in level:
            if not isinstance(d, dict):
                continue
            if key in d and not isinstance(d[key], dict):
                return d[key]
            children = sorted(d.items(), key=lambda kv: kv[0] != "test")
            nxt += [v for _, v in children if isinstance(v, dict)]
        level = nxt
    return None


class _Hist(NamedTuple):
    edges: list[float]
    counts: list[float]
    never: int | None
    """Units counted apart because they never fire (not in any bin), where recorded."""


def _find_hist(obj: Any, depth: int = 3) -> _Hist | None:
    """A histogram dict (a list under a key with 'edge', one under a key with 'count') inside
    ``obj``, searched through nested dicts (keys naming a histogram first)."""
    if not isinstance(obj, dict):
        return None
    edges = next((v for k, v in obj.items() if "edge" in k and isinstance(v, list)), None)
    counts = next((v for k, v in obj.items() if "count" in k and isinstance(v, list)), None)
    if edges and counts and len(edges) == len(counts) + 1:
        e = [number(x) for x in edges]
        if all(x is not None for x in e):
            never = number(obj.get("never_active"))
            return _Hist([float(x) for x in e if x is not None], [number(x) or 0.0 for x in counts],
                         None if never is None else int(never))
    if depth == 0:
        return None
    for _, v in sorted(obj.items(), key=lambda kv: "hist" not in kv[0]):
        found = _find_hist(v, depth - 1)
        if found:
            return found
    return None


def _conditions(run: RunData) -> dict[str, dict[str, Any]]:
    """Splice conditions from splice.json, else assembled from summary.json."""
    sp = run.splice
    if sp is not None:
        base = sp["conditions"] if isinstance(sp.get("conditions"), dict) else sp
        found = {k: v for k, v in base.items() if isinstance(v, dict) and k in CONDITIONS}
        if found:
            return found
    sae = get(run.summary, "sae")
    if not isinstance(sae, dict):
        return {}
    out: dict[str, dict[str, Any]] = {}
    if isinstance(sae.get("original"), dict):
        out["original"] = sae["original"]
    elif isinstance(get(run.summary, "model", "test"), dict):
        out["original"] = {"test": run.summary["model"]["test"]}  # type: ignore[index]
    spliced = {k: sae[k] for k in ("fvu", "cosine", "l0", "dead_fraction", "dense_fraction",
                                   "top10_overlap", "kl") if k in sae}
    if isinstance(sae.get("spliced"), dict):
        spliced.update(sae["spliced"])
    out["spliced"] = spliced
    for name in ("mean_ablated", "random_sae"):
        if isinstance(sae.get(name), dict):
            out[name] = sae[name]
    return out


# ---------- sections ----------

def _header(run: RunData) -> str:
    ds = get(run.summary, "dataset", "name") or get(run.config, "data", "name") or ""
    model = get(run.summary, "model", "name") or get(run.config, "model", "name") or ""
    seed = get(run.config, "seed")
    version = get(run.config, "versions", "recsae") or get(run.config, "environment", "recsae")
    bits = [f"run <b>{escape(run.path.resolve().name)}</b>"]
    if ds:
        bits.append(f"dataset <b>{escape(str(ds))}</b>")
    if model:
        bits.append(f"model <b>{escape(str(model))}</b>")
    if seed is not None:
        bits.append(f"seed {escape(str(seed))}")
    if version:
        bits.append(f"recsae {escape(str(version))}")
    nav = "".join(f'<a href="#{sid}">{name}</a>' for sid, name in (
        ("overview", "Overview"), ("splice", "Splice"), ("interpretability", "Interpretability"),
        ("steering", "Steering"), ("latents", "Latents")))
    return (f'<header class="top"><h1>recsae report</h1><span class="muted">{" · ".join(bits)}'
            f"</span><nav>{nav}</nav></header>")


def _overview(run: RunData) -> str:
    s = run.summary
    cards = []
    ds = get(s, "dataset")
    if isinstance(ds, dict):
        cards.append(_card("dataset", escape(str(ds.get("name", "?"))),
                           f"{fmt(ds.get('n_users'))} users · {fmt(ds.get('n_items'))} items · "
                           f"{fmt(ds.get('n_interactions'))} interactions"))
    ndcg = number(get(s, "model", "test", "ndcg@10"))
    if ndcg is not None:
        cards.append(_card("model NDCG@10 (test)", fmt(ndcg, 3),
                           f"{escape(str(get(s, 'model', 'name') or 'model'))}, full ranking"))
    sae = get(s, "sae")
    if isinstance(sae, dict):
        cards.append(_card("SAE reconstruction", f"FVU {fmt(sae.get('fvu'), 3)}",
                           "fraction of variance the SAE leaves unexplained (0 = perfect)"))
        ret = number(sae.get("retention"))
        cards.append(_card("NDCG kept when spliced", pct(ret),
                           f"top-10 overlap with the original {fmt(sae.get('top10_overlap'), 3)}"))
    it = get(s, "interpret")
    if not isinstance(it, dict):
        it = run.interpret
    if isinstance(it, dict):
        share, neur = number(it.get("share_interpretable")), number(get(it, "neurons", "share_interpretable"))
        ratio = f" (×{share / neur:.1f} the raw neurons)" if share and neur else ""
        cards.append(_card("interpretable latents", pct(share),
                           f"{fmt(it.get('n_interpretable'))} of {fmt(it.get('n_alive'))} alive "
                           f"latents{ratio}"))
    st = _steer_concepts(s)
    if st:
        best = max(st.items(), key=lambda kv: _lift(kv[1]) or 0.0)
        lift = _lift(best[1])
        if lift is not None:
            cards.append(_card(
                "steering lift", f"×{lift:.1f}",
                f"{escape(best[0])}: share of the top 10 from {pct(best[1].get('share_before'))} "
                f"to {pct(best[1].get('share_after'))}"))
    intro = (
        "recsae decomposes a recommender's user representation into the latents of a sparse "
        "autoencoder (SAE), explains each latent by a rule over item attributes, checks the rule "
        "on held-out users (the confidence), and tests it by editing the latent. Click a latent "
        "in the <a href=\"#latents\">table</a> to see what makes it fire."
    )
    body = f'<div class="cards">{"".join(cards)}</div>' if cards else _missing(
        "summary.json was not found in the run folder", "Run `recsae run --out DIR` first.")
    return _section("overview", "Overview", intro, body)


def _steer_concepts(summary: Any) -> dict[str, dict[str, Any]]:
    """Per studied concept from summary.steer: under ``concepts``, or directly keyed by concept."""
    st = get(summary, "steer")
    if not isinstance(st, dict):
        return {}
    if isinstance(st.get("concepts"), dict):
        st = st["concepts"]
    return {str(k): v for k, v in st.items() if isinstance(v, dict) and "share_before" in v}


def _lift(rec: Any) -> float | None:
    before, after = number(get(rec, "share_before")), number(get(rec, "share_after"))
    return after / before if before and after is not None else None


def _dataset(run: RunData) -> str:
    ds = get(run.summary, "dataset")
    if not isinstance(ds, dict):
        return _section("dataset", "Dataset", "", _missing("summary.json has no dataset part"))
    pairs = [(k, v) for k, v in ds.items() if not isinstance(v, (dict, list))]
    return _section("dataset", "Dataset", "", _kv_table(pairs))


def _metric_table(blocks: dict[str, dict[str, Any]]) -> str:
    """Rows 'split metric', columns the cut-offs K of names like 'ndcg@10'."""
    ks: list[int] = []
    rows: dict[tuple[str, str], dict[int, Any]] = {}
    flat: list[tuple[str, Any]] = []
    for split, metrics in blocks.items():
        for name, v in metrics.items():
            m = re.fullmatch(r"([A-Za-z_]+)@(\d+)", str(name))
            if m:
                k = int(m.group(2))
                ks.append(k)
                rows.setdefault((split, m.group(1).lower()), {})[k] = v
            elif not isinstance(v, (dict, list)):
                flat.append((f"{split} {name}", v))
    ks = sorted(set(ks))
    head = "".join(f'<th class="num">@{k}</th>' for k in ks)
    body = "".join(
        f"<tr><th>{escape(split)} {escape(_METRIC_NAMES.get(name, name))}</th>"
        + "".join(f'<td class="num">{fmt(vals.get(k))}</td>' for k in ks) + "</tr>"
        for (split, name), vals in rows.items()
    )
    table = f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>" if rows else ""
    return table + _kv_table(flat)


def _model(run: RunData) -> str:
    m = get(run.summary, "model")
    if not isinstance(m, dict):
        return _section("model", "Model", "", _missing("summary.json has no model part"))
    blocks = {k: m[k] for k in ("valid", "test") if isinstance(m.get(k), dict)}
    lead = (f"{escape(str(m.get('name', '')))}: full ranking over all items, the user's history "
            "masked. HR = hit rate, NDCG = normalised discounted cumulative gain.")
    extra = [(k, v) for k, v in m.items() if k not in ("valid", "test", "name", "below_most_popular")
             and not isinstance(v, (dict, list))]
    warning = ""
    if m.get("below_most_popular"):
        pop = get(run.summary, "baseline", "most_popular", "test", "ndcg@10")
        warning = (f'<p class="warning" role="note">Warning: this model does not beat the most-popular ranker '
                   f"(test NDCG@10 {fmt(get(m, 'test', 'ndcg@10'), 4)} against {fmt(pop, 4)}): its latents explain "
                   "a model that ranks no better than counting.</p>")
    return _section("model", "Model", lead, warning + _metric_table(blocks) + _kv_table(extra))


_SPLICE_COLS: list[tuple[str, str, str]] = [
    ("ndcg@10", "NDCG@10", "ranking quality on the test targets"),
    ("hr@10", "HR@10", "share of test targets in the top 10"),
    ("retention", "kept", "NDCG@10 relative to the original model"),
    ("top10_overlap", "top-10 overlap", "mean share of the original top-10 list kept (1 = same)"),
    ("kl", "KL", "KL divergence of the item-score softmax from the original (0 = same)"),
    ("fvu", "FVU", "fraction of variance unexplained by the reconstruction"),
    ("cosine", "cosine", "cosine similarity of reconstruction and input"),
    ("l0", "L0", "mean number of active latents per row"),
    ("dead_fraction", "silent", "share of latents that fire on none of the evaluated test rows "
     "(these rows are few; the dead fraction over every harvested row is in summary.json)"),
    ("dense_fraction", "dense", "share of latents firing on more than 10 % of rows"),
]


def _splice(run: RunData) -> str:
    conds = _conditions(run)
    title = "Splice: does the SAE keep the model's behaviour?"
    lead = ("The model ranks items again with its representation replaced by the SAE's "
            "reconstruction (spliced) and by two controls that should do worse: the mean "
            "representation (mean-ablated) and an untrained SAE (random). Adding the error term "
            "back must reproduce the original exactly.")
    if not conds:
        return _section("splice", title, lead, _missing(
            "splice.json was not found and summary.json has no sae part",
            "Run `recsae sae eval` for this run."))
    base = number(_find_key(conds.get("original"), "ndcg@10"))
    head = "".join(f'<th class="num" title="{escape(h)}">{escape(n)}</th>'
                   for _, n, h in _SPLICE_COLS)
    rows = []
    for key, label in CONDITIONS.items():
        if key not in conds:
            continue
        c = conds[key]
        cells = []
        for col, _, _ in _SPLICE_COLS:
            if col == "retention":
                v = number(_find_key(c, "ndcg@10"))
                val = pct(v / base) if v is not None and base else "—"
            elif col in ("dead_fraction", "dense_fraction"):
                val = pct(_find_key(c, col))
            else:
                val = fmt(_find_key(c, col))
            cells.append(f'<td class="num">{val}</td>')
        rows.append(f"<tr><th>{escape(label)}</th>{''.join(cells)}</tr>")
    legend = "".join(f"<li><b>{escape(n)}</b>: {escape(h)}</li>" for _, n, h in _SPLICE_COLS)
    table = (f'<div class="tablewrap" style="max-height:none"><table style="margin:0">'
             f"<thead><tr><th>condition</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody>"
             f'</table></div><details><summary>What the columns mean</summary><ul>{legend}</ul>'
             "</details>")
    hists = {CONDITIONS[k]: h for k in ("spliced", "random_sae")
             if (h := _find_hist(conds.get(k))) is not None}
    if not hists and (h := _find_hist(run.splice)) is not None:
        hists = {"SAE": h}
    charts = ""
    if hists:
        edges = next(iter(hists.values())).edges
        same = {n: h for n, h in hists.items() if h.edges == edges}
        charts = '<div class="charts">' + svg.histogram(
            edges, {n: h.counts for n, h in same.items()}, title="How often each latent fires",
            x_label="activation frequency (share of rows, log scale)", y_label="latents",
            x_format="log10") + "</div>"
        never = "; ".join(f"{escape(n)}: {h.never:,}" for n, h in same.items() if h.never is not None)
        charts += ('<p class="help">Latents counted by the share of rows on which they fire: '
                   "dense latents sit at the right, rare ones at the left. Latents that never "
                   f"fire are not drawn{' (' + never + ')' if never else ''}.</p>")
    return _section("splice", title, lead, table + charts)


def _shares(counts: list[Any]) -> list[float] | None:
    vals = [number(c) or 0.0 for c in counts]
    total = sum(vals)
    return [v / total for v in vals] if total > 0 else None


def _confidence_histograms(run: RunData) -> dict[str, list[float]]:
    """Share of units per confidence bin: interpret.json's histograms (SAE, neurons, random
    SAE), else the SAE latents' confidences from interpretation.parquet in 10 bins."""
    out: dict[str, list[float]] = {}
    for name, keys in (("SAE latents", ()), ("raw neurons", ("neurons",)),
                       ("random SAE", ("random_sae",))):
        counts = get(run.interpret, *keys, "confidence_histogram")
        shares = _shares(counts) if isinstance(counts, list) and counts else None
        if shares and (not out or len(shares) == len(next(iter(out.values())))):
            out[name] = shares
    if "SAE latents" not in out and run.latents is not None and "confidence" in run.latents:
        df = run.latents
        if "alive" in df.columns:
            df = df[df["alive"].astype(bool)]
        counts = [0.0] * 10
        for v in (number(x) for x in df["confidence"]):
            if v is not None:
                counts[min(max(int(v * 10), 0), 9)] += 1
        shares = _shares(counts)
        if shares:
            out = {"SAE latents": shares}  # baselines only beside the same binning
    return out


FAMILIES = {"sae": "SAE latents", "neurons": "raw neurons", "random_sae": "untrained SAE",
            "random_model_sae": "untrained-model SAE"}


def _family(it: dict[str, Any], family: str, *keys: str) -> Any:
    return get(it, *keys) if family == "sae" else get(it, family, *keys)


def _interpretability(run: RunData) -> str:
    title = "Interpretability: latents against their controls"
    lead = ("A latent is interpretable when its rule, fitted on some users, predicts on other "
            "users when the latent fires strongly (confidence = balanced accuracy, threshold "
            "usually 0.8). An untrained SAE passes that test often, so every figure stands beside "
            "its controls: the raw neurons, the untrained SAE, and an SAE trained on an untrained "
            "model. A latent is <em>faithful</em> when, in addition, ablating and amplifying it "
            "moves its concept in the model's rankings more than a matched unit active on the same "
            "users (false discovery rate 5 %).")
    it = get(run.summary, "interpret")
    if not isinstance(it, dict):
        it = run.interpret
    parts = []
    if isinstance(it, dict):
        fams = [f for f in FAMILIES if f == "sae" or isinstance(it.get(f), dict)]
        cats = [FAMILIES[f] for f in fams]
        series = {"share interpretable": [number(_family(it, f, "share_interpretable")) for f in fams]}
        faithful = it.get("faithful")
        if isinstance(faithful, dict):
            series["share faithful"] = [number(get(faithful, f, "share")) for f in fams]
        charts = [svg.bar_chart(cats, series, title="Share of alive units: interpretable and faithful",
                                value_format="{:.1%}")]
        coh = it.get("coherence")
        if isinstance(coh, dict):
            charts.append(svg.bar_chart(
                cats, {"coherence": [number(coh.get(k)) for k in fams]},
                title="Coherence of top-activating users", y_label="mean cosine"))
        parts.append('<div class="charts">' + "".join(charts) + "</div>")
        pairs = [("alive latents", it.get("n_alive")), ("interpretable latents", it.get("n_interpretable"))]
        if isinstance(faithful, dict):
            pairs.append(("faithful latents", get(faithful, "sae", "n")))
        if "planted_recovered" in it:
            pairs.append(("planted concepts recovered", " · ".join(
                f"{FAMILIES[f]} {pct(_family(it, f, 'planted_recovered'))}" for f in fams
                if _family(it, f, "planted_recovered") is not None)))
        shuffled = it.get("shuffled_control")
        if isinstance(shuffled, dict):
            pairs.append(("shuffled explanations: median confidence (chance 0.5)",
                          fmt(shuffled.get("median_confidence"), 3)))
        probing = it.get("sparse_probing")
        if isinstance(probing, dict):
            pairs.append(("next-item concept probe, 1 unit: mean AUC", " · ".join(
                f"{FAMILIES[f]} {fmt(get(probing, f, '1'), 3)}" for f in fams if get(probing, f, "1") is not None)))
        stability = it.get("seed_stability")
        if isinstance(stability, dict):
            pairs.append(("latents found again with another seed (cosine ≥ 0.7)",
                          f"{pct(get(stability, 'trained', 'share'))} (two untrained SAEs: "
                          f"{pct(get(stability, 'floor', 'share'))})"))
        parts.append(_kv_table(pairs))
    hist = _confidence_histograms(run)
    if hist:
        edges = [i / len(next(iter(hist.values()))) for i in range(len(next(iter(hist.values()))) + 1)]
        parts.append('<div class="charts">' + svg.histogram(
            edges, hist, title="Validated confidence per unit (alive units)",
            x_label="confidence (balanced accuracy on held-out users; dashed: 0.8)",
            y_label="share of units", marker=0.8) + "</div>")
    if not parts:
        return _section("interpretability", title, lead, _missing(
            "neither interpretation.parquet nor an interpret part in summary.json was found",
            "Run `recsae interpret --run DIR`."))
    return _section("interpretability", title, lead, "".join(parts))


def _explanations(run: RunData) -> str:
    """LLM explanations (``recsae explain``), when the run has them: each family's score side by side."""
    title = "Explanations in words (LLM)"
    if run.explain_stale:
        return _section("explanations", title, "", _missing(
            "explain.json was made for an earlier SAE of this run", "Rerun `recsae explain`."))
    if run.explain is None:
        return ""
    ex = run.explain
    lead = ("A language model explained each latent from its strongest rows on some users, then "
            "predicted from the explanation alone whether the latent fires on rows of other users. "
            "Score: balanced accuracy (0.5 is chance) with a 95 % interval. Controls: each latent's "
            "rows judged with another latent's explanation (shuffled), and the neurons, the untrained "
            "SAE's latents and the untrained-model SAE's latents explained the same way. Model: {escape(str(get(ex, 'llm', 'model')))}.")
    rows = []
    for fam, label in FAMILY_LABELS.items():
        s = get(ex, "summary", fam)
        if not isinstance(s, dict) or not s.get("n"):
            continue
        rows.append(f'<tr><th>{escape(label)}</th><td class="num">{fmt(s.get("n"))}</td>'
                    f'<td class="num">{fmt(s.get("mean_balanced_accuracy"), 3)} [{fmt(s.get("ci_low"), 3)}, '
                    f'{fmt(s.get("ci_high"), 3)}]</td><td class="num">{pct(s.get("share_above_chance"))}</td>'
                    f'<td class="num">{fmt(s.get("mean_auc"), 3)}</td></tr>')
    table = ('<table><thead><tr><th>units</th><th class="num">explained</th><th class="num">balanced '
             'accuracy [95 %]</th><th class="num">above chance</th><th class="num">AUC</th></tr></thead>'
             f'<tbody>{"".join(rows)}</tbody></table>')
    best = sorted(explained_latents(run).items(), key=lambda jr: -(number(jr[1].get("balanced_accuracy")) or 0.0))[:10]
    items = "".join(f"<li>latent {j} ({fmt(r.get('balanced_accuracy'), 3)}): "
                    f"{escape(str(r.get('explanation', '')))}</li>" for j, r in best)
    listing = f"<h3>Best-predicted SAE latents</h3><ol>{items}</ol>" if items else ""
    return _section("explanations", title, lead, table + listing)


_X_KEYS = ("alpha", "strength", "scale", "factor")


def _series_name(key: str) -> str:
    """Readable curve names: 'ndcg_random' -> 'NDCG · random latents'."""
    base = key.removesuffix("_random")
    name = {"share": "concept share", "ndcg": "NDCG", "hr": "HR"}.get(base, base.replace("_", " "))
    return f"{name} · random" if key.endswith("_random") else name


def _curve_series(keys: list[str]) -> list[str]:
    """The y series worth plotting: shares and NDCG under the edit and its random control."""
    keep = [k for k in keys if ("share" in k or "ndcg" in k)
            and not k.endswith(("_before", "_ratio"))]
    return (keep or keys)[:4]


def _curves(obj: Any, where: tuple[str, ...] = ()) -> list[tuple[str, str, list[float], dict[str, list[Any]]]]:
    """Dose-response curves in steer.json: lists of records over alpha / strength / factor."""
    if isinstance(obj, list) and len(obj) >= 2 and all(isinstance(r, dict) for r in obj):
        xk = next((k for k in _X_KEYS if all(number(r.get(k)) is not None for r in obj)), None)
        if xk:
            ys = _curve_series([k for k in obj[0] if k != xk and "latent" not in k
                                and all(number(r.get(k)) is not None for r in obj)])
            if ys:
                return [(" › ".join(where), xk, [float(r[xk]) for r in obj],
                         {_series_name(k): [number(r[k]) for r in obj] for k in ys})]
    found = []
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            name = v.get("concept") if isinstance(v, dict) else None
            found += _curves(v, (*where, str(name) if name else str(i)))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            skip = k in ("concepts", "curves", "table", "rows", "config")
            found += _curves(v, where if skip else (*where, str(k)))
    return found


def _steering(run: RunData) -> str:
    title = "Steering and ablation"
    lead = ("Editing latents (keeping the SAE's error term) should move recommendations the way "
            "their rules say. Each effect is shown beside a control that edits random latents. "
            "Share = share of the top-10 recommendations carrying the concept.")
    parts = []
    st = _steer_concepts(run.summary)
    if st:
        rows = []
        for concept, r in st.items():
            lift = _lift(r)
            nb, na = number(get(r, "ndcg_before")), number(get(r, "ndcg_after"))
            change = f"{100 * (na - nb) / nb:+.1f} %" if nb and na is not None else "—"
            ci = get(r, "ndcg_ratio_ci")
            if isinstance(ci, list) and len(ci) == 2 and all(number(x) is not None for x in ci):
                change += f" [{100 * (ci[0] - 1):+.1f}, {100 * (ci[1] - 1):+.1f}]"
            rows.append(
                f"<tr><th>{escape(str(concept))}</th><td class=\"num\">{pct(get(r, 'share_before'))}</td>"
                f"<td class=\"num\">{pct(get(r, 'share_after'))}</td>"
                f"<td class=\"num\">{'—' if lift is None else f'×{lift:.2f}'}</td>"
                f"<td class=\"num\">{pct(get(r, 'random_control_share_after'))}</td>"
                f"<td class=\"num\">{fmt(nb)}</td><td class=\"num\">{fmt(na)}</td>"
                f"<td class=\"num\">{change}</td></tr>")
        parts.append(
            "<table><thead><tr><th>concept</th><th class=\"num\">share before</th>"
            "<th class=\"num\">share after</th><th class=\"num\">lift</th>"
            "<th class=\"num\">random control after</th><th class=\"num\">NDCG@10 before</th>"
            "<th class=\"num\">NDCG@10 after</th><th class=\"num\" title=\"95 % paired bootstrap interval over "
            "the measured users in brackets\">NDCG change [95 % interval]</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")
        cats = list(st)[:6]
        parts.append('<div class="charts">' + svg.bar_chart(
            cats, {
                "before": [number(get(st[c], "share_before")) for c in cats],
                "after": [number(get(st[c], "share_after")) for c in cats],
                "random control": [number(get(st[c], "random_control_share_after")) for c in cats],
            }, title="Concept share in the top 10", value_format="{:.0%}") + "</div>")
    for key, heading, help_text in (
        ("ablation", "Ablation test", "Ablating each confident latent: the drop of its own "
         "concept's top-10 share, against ablating random latents (paired Wilcoxon test)."),
        ("debias", "Popularity debiasing", "Damping the latents most associated with item "
         "popularity: catalogue coverage, Gini index of exposure, long-tail share, NDCG."),
    ):
        rec = get(run.summary, "steer", key)
        if isinstance(rec, dict):
            pairs = [(k, v) for k, v in rec.items() if not isinstance(v, (dict, list))]
            parts.append(f"<h3>{escape(heading)}</h3><p class=\"help\">{escape(help_text)}</p>"
                         + _kv_table(pairs))
    curves = _curves(run.steer)[:8]
    if curves:
        parts.append(
            '<h3>Dose–response</h3><p class="help">Each curve raises the edit strength: '
            "<b>add</b> adds strength × ‖h‖ × the latents' decoder directions, <b>mix</b> moves "
            "that share of the activation mass onto them, <b>debias</b> scales the popularity "
            "latents by the factor. Dashed lines (“· random”): the same edit on random "
            "latents, the control. Steering curves are measured on the validation items, where "
            "the reported strength is chosen; the figures above measure that strength on the "
            "test items.</p>"
            '<div class="charts">' + "".join(
            svg.line_chart(xs, ys, title=where or "steering curve", x_label=xk,
                           y_label="share / NDCG",
                           dashed={n for n in ys if n.endswith("· random")})
            for where, xk, xs, ys in curves) + "</div>")
    if run.steer is not None:
        parts.append("<details><summary>All of steer.json</summary><pre>"
                     f"{escape(_clip(json.dumps(run.steer, indent=1)))}</pre></details>")
    if not parts:
        return _section("steering", title, lead, _missing(
            "steer.json was not found and summary.json has no steer part",
            "Run `recsae steer --run DIR ...`."))
    return _section("steering", title, lead, "".join(parts))


def _clip(text: str, limit: int = 20000) -> str:
    return text if len(text) <= limit else text[:limit] + "\n… (cut)"


def _latents(run: RunData, payload: dict[str, Any]) -> str:
    title = "Latents"
    if run.latents is None:
        return _section("latents", title, "", _missing(
            "interpretation.parquet was not found", "Run `recsae interpret --run DIR`."))
    n = len(payload["latents"])
    lead = (f"One row per latent ({n}). Click a column title to sort, type to filter by rule or "
            "item title, click a row to open the latent. Confidence: balanced accuracy of the "
            "rule on held-out users, with its 95 % interval; frequency: share of rows on which "
            "the latent fires; ✓ marks interpretable latents.")
    note = "" if run.examples is not None else _missing(
        "report_data/latent_examples.json was not found, so latent views show no titles or "
        "histograms")
    return _section("latents", title, lead, note + latent_table(payload))


def _config(run: RunData) -> str:
    if run.config is None:
        return ""
    return ('<section id="config"><h2>Run configuration</h2><details><summary>config.json'
            f"</summary><pre>{escape(_clip(json.dumps(run.config, indent=1)))}</pre></details>"
            "</section>")


def _csp(script: str) -> str:
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    return (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
            "img-src data:; base-uri 'none'; form-action 'none'")


def render_report(run: RunData) -> str:
    """The whole page as a string."""
    payload = latent_payload(run)
    sections: list[Callable[[RunData], str]] = [_splice, _interpretability, _explanations, _steering]
    body = (_overview(run) + f'<div class="two">{_dataset(run)}{_model(run)}</div>'
            + "".join(f(run) for f in sections) + _latents(run, payload) + _config(run))
    title = f"recsae report · {run.path.resolve().name}"
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{_csp(JS)}">'
        '<meta name="color-scheme" content="light dark">'
        f'<title>{escape(title)}</title><link rel="icon" href="data:,">'
        f"<style>{CSS}</style></head><body>{_header(run)}<main>{body}</main>{VIEW_SHELL}"
        f'<script type="application/json" id="recsae-data">{embed_json(payload)}</script>'
        f"<script>{JS}</script></body></html>\n"
    )


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Render ``run_dir`` to ``out`` (default ``run_dir/report/index.html``), atomically."""
    from recsae.io import atomic_path

    run = load_run(run_dir)
    path = Path(out) if out is not None else RunDir(run_dir).report_page
    page = render_report(run)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
        tmp.chmod(0o644)  # a page to share, not a secret (the temporary file starts as 0600)
    return path
