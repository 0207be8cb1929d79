"""A small fake run folder with every file the report reads, including hostile titles.

Two layouts: ``"stages"`` follows what the interpret / sae / steer stages write today
(``confidence_low``, ``val_f1``, parallel ``top_users``/``top_positions``/``top_activations``,
``spliced_error`` with a nested ``sae`` block, steer.json with ``ablation.rows``, ``concepts`` and
``debias``); ``"brief"`` uses the spelling of the report's brief (``ci_low``, ``f1``, ``top_rows``,
summary.steer keyed by concept). The report must render both.

A module with a unique name (not conftest) so that tests can import it whatever else is on sys.path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsae.data.dataset import Ragged
from recsae.io import write_json, write_parquet
from recsae.report import write_latent_examples

EVIL_TITLES = [
    "<script>alert(1)</script>",
    '"Quoted" & \'single\' title',
    "</script><img src=x onerror=alert(2)>",
    "Tom & Jerry <b>bold</b> ]]> <!-- comment",
]
EVIL_RULE = "<img src=x onerror=alert(3)> & genre=\"Horror\""
EVIL_CONCEPT = "<i>evil concept</i>"
ALL_PARTS = ("config", "summary", "splice", "interpret", "steer", "interpretation", "examples")
N_ITEMS = 40
N_USERS = 12
GENRES = ["Horror", "Comedy", "Drama", "Sci-Fi", "Children's"]


def titles() -> list[str]:
    t = [""] + [f"Movie {i} ({1950 + i})" for i in range(1, N_ITEMS + 1)]
    for k, evil in enumerate(EVIL_TITLES):
        t[1 + k] = evil
    return t


def histories() -> Ragged:
    rng = np.random.default_rng(0)
    rows: list[list[int]] = [[]]
    for u in range(1, N_USERS + 1):
        seq = [int(i) for i in rng.integers(5, N_ITEMS + 1, size=6 + u)]
        seq[-1] = 1 + (u % len(EVIL_TITLES))  # every user's latest item is a hostile title
        rows.append(seq)
    return Ragged.from_lists(rows)


def confidence(j: int) -> float:
    """Deterministic, distinct-enough confidences (latent 3 has none)."""
    return float("nan") if j == 3 else round(0.3 + ((j * 7) % 23) / 32, 4)


def frequency(j: int) -> float:
    return round(0.001 * (1 + (j * 5) % 17), 4)


def rule(j: int) -> str | None:
    """Latent 2's rule is hostile text; latent 5 has no rule."""
    if j == 2:
        return EVIL_RULE
    if j == 5:
        return None
    return f"genre={GENRES[j % 5]}" + (" & decade=1990s" if j % 3 == 0 else "")


def _top(j: int) -> list[dict]:
    hist = histories()
    users = [1 + (j + r) % N_USERS for r in range(7)]
    return [{"user": u, "position": len(hist[u]), "activation": round(3.0 - 0.4 * r + 0.01 * j, 3)}
            for r, u in enumerate(users)]


def interpretation(n_latents: int, layout: str = "stages") -> pd.DataFrame:
    t = titles()
    recs = []
    for j in range(n_latents):
        conf = confidence(j)
        items = [1 + (j + i) % N_ITEMS for i in range(5)]
        top = _top(j)
        rec = {"latent": j, "rule": rule(j) if layout == "brief" else (rule(j) or ""),
               "confidence": conf, "interpretable": bool(conf >= 0.8), "frequency": frequency(j),
               "top_items": items, "top_item_titles": [t[i] for i in items]}
        if layout == "brief":
            rec.update({"ci_low": conf - 0.05, "ci_high": min(conf + 0.05, 1.0), "precision": 0.7,
                        "recall": 0.6, "f1": round(0.2 + (j % 7) / 10, 3), "lift": 3.5,
                        "support": 120 + j, "top_rows": top})
        else:
            rec.update({
                "alive": True, "kind": "input", "rule_concepts": [rule(j) or ""], "op": "",
                "fit_support": 120 + j, "fit_precision": 0.72, "fit_recall": 0.61, "fit_f1": 0.66,
                "fit_lift": 3.5, "val_rows": 400, "val_firing": 40, "val_inactive": 300,
                "val_support": 50, "val_precision": 0.7, "val_recall": 0.6,
                "val_f1": round(0.2 + (j % 7) / 10, 3), "confidence_low": conf - 0.05,
                "confidence_high": min(conf + 0.05, 1.0), "coherence": 0.5,
                "top_users": [r["user"] for r in top], "top_positions": [r["position"] for r in top],
                "top_activations": [r["activation"] for r in top],
                "example_items": [1] * len(top), "example_titles": [t[1]] * len(top),
            })
        recs.append(rec)
    return pd.DataFrame(recs)


def _metrics(nd: float) -> dict:
    return {"ndcg@5": round(nd * 0.8, 4), "ndcg@10": nd, "hr@5": round(nd * 1.5, 4),
            "hr@10": round(2 * nd, 4)}


def summary(layout: str = "stages") -> dict:
    steer_concepts = {
        "genre=Horror": {"share_before": 0.05, "share_after": 0.3, "random_control_share_after": 0.05,
                         "ndcg_before": 0.18, "ndcg_after": 0.175, "ndcg_ratio_ci": [0.93, 1.01]},
        EVIL_CONCEPT: {"share_before": 0.1, "share_after": 0.2, "random_control_share_after": float("nan"),
                       "ndcg_before": 0.18, "ndcg_after": 0.17},
    }
    out = {
        "dataset": {"name": "fake <ml>", "n_users": N_USERS, "n_items": N_ITEMS,
                    "n_interactions": int(histories().lengths().sum())},
        "model": {"name": "sasrec", "valid": _metrics(0.2), "test": _metrics(0.18),
                  "train_seconds": 12.5},
        "sae": {"fvu": 0.02, "cosine": 0.99, "l0": 32.0, "dead_fraction": 0.01,
                "dense_fraction": 0.0, "original": {"test": _metrics(0.18)},
                "spliced": {"test": _metrics(0.179)}, "retention": 0.994, "top10_overlap": 0.81,
                "kl": 0.05, "random_sae": {"test": _metrics(0.01), "top10_overlap": 0.05, "kl": 3.1},
                "mean_ablated": {"test": _metrics(0.02), "top10_overlap": 0.1, "kl": 2.0}},
        "interpret": {"n_alive": 30, "n_interpretable": 9, "share_interpretable": 0.3,
                      "neurons": {"share_interpretable": 0.05},
                      "random_sae": {"share_interpretable": 0.0},
                      "coherence": {"sae": 0.6, "neurons": 0.2, "random_sae": 0.1}},
        "steer": steer_concepts,
    }
    if layout == "stages":
        out["steer"] = {
            "concepts": steer_concepts,
            "ablation": {"n_latents": 3, "mean_drop": 0.2, "mean_drop_random": 0.01,
                         "wilcoxon_statistic": 6.0, "p_value": 0.125},
            "debias": {"factor": 0.0, "coverage_before": 0.3, "coverage_after": 0.45},
        }
    return out


def splice(layout: str = "stages") -> dict:
    edges = [-4 + 0.25 * i for i in range(17)]
    cond = {}
    error_name = "spliced_error" if layout == "stages" else "spliced_plus_error"
    for name, nd, overlap, kl in (("original", 0.18, 1.0, 0.0), ("spliced", 0.179, 0.8, 0.05),
                                  (error_name, 0.18, 1.0, 0.0), ("mean_ablated", 0.02, 0.1, 2.0),
                                  ("random_sae", 0.01, 0.05, 3.1)):
        c: dict = {"metrics": _metrics(nd), "top10_overlap": overlap, "kl": kl, "fvu": 0.0,
                   "cosine": 1.0}
        if name in ("spliced", "random_sae"):
            shift = 0 if name == "spliced" else 6
            stats = {"l0": 32.0, "dead_fraction": 0.01, "dense_fraction": 0.0 if shift == 0 else 0.4,
                     "freq_histogram": {"log10_edges": edges, "never_active": 1,
                                        "counts": [max(0, 8 - abs(i - 6 - shift)) for i in range(16)]}}
            c.update({"fvu": 0.02 if shift == 0 else 0.9, "cosine": 0.99 if shift == 0 else 0.3})
            if layout == "stages":
                c["sae"] = stats
            else:
                c.update(stats)
        cond[name] = c
    return {"which": "test", "conditions": cond}


def steer(layout: str = "stages") -> dict:
    ablation = [{"latent": j, "rule": rule(j) or "", "concept": f"genre={GENRES[j % 5]}",
                 "own_share_drop" if layout == "brief" else "drop": round(0.1 * (j + 1), 4),
                 "drop_random": 0.01} for j in (0, 1, 2)]
    if layout == "brief":
        return {"ablation": ablation,
                "curves": {"genre=Horror": [{"alpha": a, "share": 0.05 + a, "ndcg@10": 0.18 - a / 10}
                                            for a in (0.0, 0.1, 0.2, 0.3)]}}
    curve = [{"strength": a, "share_before": 0.05, "share": 0.05 + a, "share_random": 0.05,
              "share_ratio": (0.05 + a) / 0.05, "ndcg_before": 0.18, "ndcg": 0.18 - a / 10,
              "ndcg_random": 0.18} for a in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)]
    return {
        "config": {"seed": 0},
        "n_users": N_USERS,
        "ablation": {"rows": ablation, "n_latents": 3, "mean_drop": 0.2, "mean_drop_random": 0.01,
                     "statistic": 6.0, "p_value": 0.125},
        "concepts": [{"concept": "genre=Horror", "latents": [0, 10], "n_items": 8,
                      "curves": {"add": curve, "mix": curve[:4]},
                      "chosen": {"method": "add", **curve[3]}}],
        "debias": {"latents": [4, 9], "association": [0.8, 0.7], "head_fraction": 0.2,
                   "before": {"coverage": 0.3},
                   "table": [{"factor": f, "coverage": 0.3 + (1 - f) / 5, "long_tail_share": 0.1 + (1 - f) / 10,
                              "long_tail_share_random": 0.1, "ndcg": 0.18, "ndcg_random": 0.18}
                             for f in (1.0, 0.5, 0.0)]},
    }


def make_run(root: Path, parts: tuple[str, ...] = ALL_PARTS, n_latents: int = 30,
             layout: str = "stages") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if "config" in parts:
        write_json(root / "config.json", {"seed": 7, "versions": {"recsae": "0.1.0"},
                                          "data": {"name": "fake"}})
    if "summary" in parts:
        write_json(root / "summary.json", summary(layout))
    if "splice" in parts:
        write_json(root / "splice.json", splice(layout))
    if "interpret" in parts:
        write_json(root / "interpret.json", {
            "share_interpretable": 0.3,
            "confidence_histogram": [0, 0, 0, 5, 4, 4, 4, 4, 5, 4],
            "neurons": {"confidence_histogram": [0, 0, 0, 10, 20, 20, 10, 2, 1, 1]},
            "random_sae": {"confidence_histogram": [0, 0, 1, 30, 20, 2, 0, 0, 0, 0]},
        })
    if "steer" in parts:
        write_json(root / "steer.json", steer(layout))
    table = interpretation(n_latents, layout)
    if "interpretation" in parts:
        write_parquet(root / "interpretation.parquet", table)
    if "examples" in parts:
        rng = np.random.default_rng(1)
        acts = sp.random(500, n_latents, density=0.1, random_state=rng, format="csr") * 5
        write_latent_examples(root, table, histories(), titles(), acts)
    return root
