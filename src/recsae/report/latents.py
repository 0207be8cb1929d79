"""The latent table (server-rendered, escaped) and the per-latent data the latent view renders.

The per-latent data is embedded as JSON in the page. Titles appear many times across latents,
so they are stored once in a string table (``strings``) and referenced by index.
"""

from __future__ import annotations

import json
import math
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from recsae.report.examples import ALIASES
from recsae.report.run_data import RunData, explained_latents, get, number

# Columns the report shows by name; any other scalar column is listed under "other statistics".
_KNOWN = {
    "latent", "rule", "confidence", "ci_low", "ci_high", "precision", "recall", "f1",
    "interpretable", "frequency", "top_rows", "top_items", "top_item_titles",
    *ALIASES.values(),
}
TABLE_TOP_ITEMS = 3
VIEW_TOP_ITEMS = 10
MAX_EXAMPLES = 5
MAX_TITLES = 8


def _round(x: Any, digits: int = 4) -> float | None:
    v = number(x)
    if v is None or v == 0:
        return v
    return float(f"{v:.{digits}g}")


def _text(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return str(x)


def _listish(x: Any) -> list[Any]:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return []
    if isinstance(x, (list, tuple, np.ndarray)):
        return list(x)
    return []


def _scalar(x: Any) -> Any:
    """A JSON-safe scalar (numbers rounded, NaN -> None), or the sentinel ``...`` if not scalar."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return _round(x)
    if isinstance(x, str):
        return x
    return ...


def _scalars(rec: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out = {}
    for k, v in rec.items():
        s = _scalar(v)
        if s is not ... and k not in skip:
            out[str(k)] = s
    return out


def effects_by_latent(steer: dict[str, Any] | None) -> dict[int, list[dict[str, Any]]]:
    """The measured edits of each latent in steer.json, as flat records (scalar fields only).

    Knows the steer stage's layout (``ablation.rows``, ``concepts[].latents`` with the chosen
    operating point, ``debias.latents``); any other record with an integer ``latent`` counts too.
    """
    out: dict[int, list[dict[str, Any]]] = {}
    if not isinstance(steer, dict):
        return out
    for c in steer.get("concepts") or []:
        if not isinstance(c, dict):
            continue
        rec = {"study": f"steering toward {c.get('concept', '?')}",
               "latents edited together": len(c.get("latents") or [])}
        rec.update(_scalars(c.get("chosen") or {}))
        for j in c.get("latents") or []:
            if isinstance(j, int):
                out.setdefault(j, []).append(rec)
    debias = steer.get("debias")
    if isinstance(debias, dict):
        assoc = debias.get("association") or []
        for i, j in enumerate(debias.get("latents") or []):
            if isinstance(j, int):
                rec = {"study": "damped for popularity debiasing"}
                if i < len(assoc):
                    rec["popularity association"] = _scalar(assoc[i])
                out.setdefault(j, []).append(rec)

    def visit(obj: Any, where: str) -> None:
        if isinstance(obj, dict):
            if isinstance(obj.get("latent"), int) and not isinstance(obj.get("latent"), bool):
                rec = {"study": where.split(".")[0] or "steer.json"} | _scalars(obj, skip=("latent",))
                out.setdefault(obj["latent"], []).append(rec)
                return
            for k, v in obj.items():
                if k not in ("concepts", "debias", "config"):
                    visit(v, f"{where}.{k}" if where else str(k))
        elif isinstance(obj, list):
            for v in obj:
                visit(v, where)

    visit(steer, "")
    return out


class _Strings:
    """Interned strings for the embedded JSON."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, s: str) -> int:
        if s not in self._index:
            self._index[s] = len(self.items)
            self.items.append(s)
        return self._index[s]


def _titles(row: pd.Series) -> list[str]:
    titles = [_text(t) for t in _listish(row.get("top_item_titles"))]
    if titles:
        return titles
    return [f"item {int(i)}" for i in _listish(row.get("top_items"))]


def latent_payload(run: RunData) -> dict[str, Any]:
    """The JSON object the page's script reads: strings, latents, default sort."""
    df = run.latents if run.latents is not None else pd.DataFrame({"latent": []})
    strings = _Strings()
    effects = effects_by_latent(run.steer)
    ex_all = get(run.examples, "latents") or {}
    explained = explained_latents(run)
    latents = []
    for _, row in df.iterrows():
        j = int(row["latent"])
        extra = {}
        for col in df.columns:
            if col not in _KNOWN:
                s = _scalar(row[col])
                if s is not ... and s is not None:
                    extra[str(col)] = s
        ex_file = get(ex_all, str(j))
        examples = []
        if ex_file is not None:
            for x in (get(ex_file, "examples") or [])[:MAX_EXAMPLES]:
                examples.append({
                    "u": x.get("user"), "t": x.get("position"), "a": _round(x.get("activation")),
                    "ti": [strings(_text(t)) for t in (x.get("recent_titles") or [])[-MAX_TITLES:]],
                })
        else:
            top_rows = sorted((dict(r) for r in _listish(row.get("top_rows"))),
                              key=lambda r: -(number(r.get("activation")) or 0.0))
            for r in top_rows[:MAX_EXAMPLES]:
                examples.append({"u": _scalar(r.get("user")), "t": _scalar(r.get("position")),
                                 "a": _round(r.get("activation"))})
        hist = get(ex_file, "histogram")
        interp = row.get("interpretable")
        latents.append({
            "id": j,
            "rule": _text(row.get("rule")),
            "conf": _round(row.get("confidence")),
            "lo": _round(row.get("ci_low")),
            "hi": _round(row.get("ci_high")),
            "p": _round(row.get("precision")),
            "r": _round(row.get("recall")),
            "f1": _round(row.get("f1")),
            "freq": _round(row.get("frequency")),
            "fe": _round(row.get("faith_effect")),
            "flo": _round(row.get("faith_low")),
            "fhi": _round(row.get("faith_high")),
            "faith": None if _scalar(row.get("faithful")) is None else bool(row.get("faithful")),
            "interp": None if interp is None or _scalar(interp) is None else bool(interp),
            "extra": extra,
            "top": [strings(t) for t in _titles(row)[:VIEW_TOP_ITEMS]],
            "ex": examples,
            "hist": (
                {"e": [hist["log10_edges"][0], hist["log10_edges"][-1]],
                 "c": [int(c) for c in hist["counts"]], "z": hist.get("n_zero")}
                if hist and hist.get("counts") else None
            ),
            "fx": effects.get(j, []),
            "llm": ({"x": _text(explained[j].get("explanation")), "ba": _round(explained[j].get("balanced_accuracy")),
                     "lo": _round(explained[j].get("ci_low")), "hi": _round(explained[j].get("ci_high"))}
                    if j in explained else None),
        })
    return {
        "strings": strings.items,
        "latents": latents,
        "hasExamples": run.examples is not None,
        "hasHistograms": get(run.examples, "n_rows") is not None,
        "defaultSort": {"key": "conf", "dir": "desc"},
    }


def embed_json(data: Any) -> str:
    """JSON safe inside <script type="application/json">: no '<', '>' or '&' can end the block.

    NaN and infinities become null (JSON.parse rejects them).
    """
    text = json.dumps(_finite(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for ch, rep in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, rep)
    return text


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _cell_num(x: float | None, percent: bool = False) -> str:
    if x is None:
        return '<span class="muted">—</span>'
    return f"{100 * x:.3g} %" if percent else f"{x:.3g}"


def latent_table(payload: dict[str, Any]) -> str:
    """The filter bar and the table, one row per latent; every data text escaped."""
    strings = payload["strings"]
    head = (
        '<div class="filters" role="search">'
        '<label>Rule, item title or #id<input type="search" id="f-text" '
        'placeholder="e.g. genre=Horror, Star Wars, #12"></label>'
        '<label>Min. confidence<input type="number" id="f-conf" min="0" max="1" step="0.05" '
        'placeholder="0–1"></label>'
        '<label>Min. frequency (%)<input type="number" id="f-fmin" min="0" max="100" step="any">'
        '</label>'
        '<label>Max. frequency (%)<input type="number" id="f-fmax" min="0" max="100" step="any">'
        '</label>'
        '<label class="inline"><input type="checkbox" id="f-interp"> interpretable only</label>'
        '<button type="button" id="f-reset">Reset</button>'
        f'<span id="latent-count">{len(payload["latents"])} latents</span></div>'
        '<div class="tablewrap"><table id="latent-table">'
        # Fixed column widths: the browser lays out thousands of rows without measuring them.
        '<colgroup><col style="width:5.5rem"><col style="width:30%"><col style="width:9.5rem">'
        '<col style="width:4.5rem"><col style="width:7rem"><col></colgroup><thead><tr>'
        '<th class="num" data-sort="id" data-dir="asc"><button type="button">Latent</button></th>'
        '<th data-sort="rule" data-dir="asc"><button type="button">Rule</button></th>'
        '<th class="num" data-sort="conf" data-dir="desc"><button type="button">Confidence</button>'
        '</th>'
        '<th class="num" data-sort="f1" data-dir="desc"><button type="button">F1</button></th>'
        '<th class="num" data-sort="freq" data-dir="desc"><button type="button">Frequency</button>'
        '</th>'
        '<th class="num" data-sort="fe" data-dir="desc" title="ablate vs amplify: how much the latent '
        'moves its concept in the rankings beyond a matched control (rank share), 95 % interval">'
        '<button type="button">Causal effect</button></th>'
        "<th>Top items (decoder)</th></tr></thead><tbody>"
    )
    rows = []
    for lat in payload["latents"]:
        j = lat["id"]
        dead = lat["extra"].get("alive") is False or lat["freq"] == 0
        rule = (escape(lat["rule"]) if lat["rule"] else
                '<span class="muted">dead: never fires</span>' if dead else
                '<span class="muted">no rule</span>')
        if lat["interp"]:
            rule += '<span class="tag yes" title="confidence ≥ threshold">✓</span>'
        ci = (f' <span class="ci">[{lat["lo"]:.2f}–{lat["hi"]:.2f}]</span>'
              if lat["lo"] is not None and lat["hi"] is not None else "")
        if lat["faith"]:
            rule += '<span class="tag yes" title="faithful: its causal effect beats the matched control">causal</span>'
        fci = (f' <span class="ci">[{lat["flo"]:.3f}–{lat["fhi"]:.3f}]</span>'
               if lat["flo"] is not None and lat["fhi"] is not None else "")
        if lat["llm"]:
            rule += (f'<div class="muted" title="LLM explanation; balanced accuracy of its predictions on held-out '
                     f'users (0.5 is chance)">LLM: {escape(lat["llm"]["x"])} ({_cell_num(lat["llm"]["ba"])})</div>')
        items = escape(" · ".join(strings[s] for s in lat["top"][:TABLE_TOP_ITEMS]))
        rows.append(
            f'<tr data-latent="{j}"><td class="num"><a href="#latent-{j}">{j}</a></td>'
            f"<td>{rule}</td><td class=\"num\">{_cell_num(lat['conf'])}{ci}</td>"
            f"<td class=\"num\">{_cell_num(lat['f1'])}</td>"
            f"<td class=\"num\">{_cell_num(lat['freq'], percent=True)}</td>"
            f"<td class=\"num\">{_cell_num(lat['fe'])}{fci}</td>"
            f'<td class="items" title="{items}">{items}</td></tr>'
        )
    return head + "".join(rows) + "</tbody></table></div>"


VIEW_SHELL = (
    '<aside id="latent-view" hidden aria-label="latent view"><div class="viewbar">'
    '<button type="button" id="v-prev" title="previous visible latent (←)">← previous</button>'
    '<button type="button" id="v-next" title="next visible latent (→)">next →</button>'
    '<span class="spacer"></span>'
    '<button type="button" id="v-close" title="close (Esc)">close ✕</button></div>'
    '<div id="latent-body"></div></aside>'
)
