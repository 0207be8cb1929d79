"""How every stage's cost grows with the data: the synthetic generator scaled to 1x, 4x and 16x
ML-1M's interactions, each stage of a run timed and its peak memory measured.

Sizes: ML-1M's positives (575,281 interactions, 6,038 users, 3,533 items; histories of 95 items
on average) times the scale: the users and the items scale with it, histories stay 20-170 items
(mean 95); the largest size gets a catalogue of at least 100,000 items (``--large-items``).
The run's own settings for synthetic data: SASRec with its preset (window 50, one block,
full-softmax cross-entropy) and the batch the data's size gives it (64 sequences under 20,000
users, else 128: ``recsae.defaults``), an SAE of 2,048 latents with k = 32 (``recsae run``'s
defaults for this much data).

Stages, each in its own fresh Python process (so that its peak memory is its own):

- ``data``: generate the interactions and split them (leave-one-out), as a run's data stage.
- ``model``: one training epoch of SASRec, and the validation ranking that ends each epoch
  (full ranking over the catalogue). An epoch longer than ``--model-seconds`` is measured on its
  first batches and extrapolated to the whole epoch (recorded as ``fraction_measured``).
- ``harvest``: the model's states at every position into the activation store.
- ``sae``: one SAE epoch over the store's train rows (streamed from the memory maps), with the
  validation FVU; ``recsae run`` trains 16 passes (or 1.5 M rows at least): this is one of them.
- ``splice``: the rest of the SAE stage (``run_sae_stage`` with the trained SAE given): the five
  splice conditions ranked over the whole catalogue, every row's SAE statistics. Above
  ``--splice-budget`` users x items (4e8: 4x runs whole), its steps over the store's rows run whole and
  the ranking of the conditions runs on a seeded sample of the users, its time extrapolated to
  all of them (recorded as ``fraction_measured``).
- ``interpret``: the interpretation stage (``from_run.run_inputs`` + ``interpret``) over the
  harvested rows (at most ``InterpretConfig.max_rows``), without the untrained-model control (its
  cost is a harvest and an SAE training). Its causal tests score every tested (unit, row) pair
  against every item; above ``--causal-budget`` items they run on a seeded share of the tested
  units and their time is extrapolated to all of them (recorded as ``fraction_measured``).
- ``steer``: the intervention stage with its defaults (2,000 sampled users). Its measurements
  each score their users against every item; a larger catalogue is measured on fewer users
  (``--steer-budget``: users x items at most that of 2,000 users x 3,533 items, 100 users at
  least) and extrapolated linearly to 2,000 (recorded as ``fraction_measured``).

Memory: ``peak_rss_mb`` is the process's peak resident set (``ru_maxrss``), which counts the pages
of memory-mapped files it touched as well as its own allocations (the interpreter and torch take
``base_rss_mb`` before the stage starts); ``peak_anon_mb`` is the peak of its anonymous memory
(``RssAnon``, sampled every 20 ms), what it allocated itself. Seconds are wall-clock on a shared
machine: the load average is recorded at the start and end of each stage.

Growth exponent of a stage: the slope of log(seconds) against log(interactions) between two sizes.
Stages that score against the whole catalogue (model, splice, steer, and the generator in data)
grow faster than the interactions, since the catalogue grows with them (28x from 1x to 16x):
``GROWTH`` says what each is proportional to, and the results give the exponents against users x
items as well. The measured table is in the README ("How cost grows").

    nice -n 10 .venv/bin/python benchmarks/bench_scale.py                 # 1x, 4x, 16x (hours)
    .venv/bin/python benchmarks/bench_scale.py --scales 0.25 1 --stages data model harvest sae
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_scale.json"

ML1M = {"interactions": 575_281, "users": 6_038, "items": 3_533}
"""ML-1M positives (rating >= 4, 5-core), the reference size 1x."""
SEQ_LEN = (20, 170)
"""Shortest and longest synthetic history: a mean of 95 items per user, as ML-1M's."""
STAGES = ("data", "model", "harvest", "sae", "splice", "interpret", "steer")
SEED = 0
SPLICE_BUDGET = 4e8
"""Users x items of the splice ranking measured (4x ML-1M's 24k users x 14k items run whole): above
it a seeded sample of the users is ranked and the time extrapolated to all of them (the stage's
steps over the store's rows run whole)."""
CAUSAL_BUDGET = 14_200
"""Catalogue size up to which the interpretation's causal tests run on every tested unit (4x: 14,134
columns); above it a seeded share budget / columns of each family's tested units, extrapolated."""
GROWTH = {
    "data": "the generator draws each interaction from the current concept's items (a cumulative sum over "
            "them): O(interactions x items / concepts), and the catalogue grows with the size",
    "model": "full-softmax cross-entropy scores every training position against every item, and the "
             "validation ranking every user against every item: O(interactions x items)",
    "harvest": "one forward pass per user: O(interactions)",
    "sae": "one pass over the harvested rows: O(rows)",
    "splice": "five conditions ranked over the whole catalogue and their top-10 / KL agreement: "
              "O(users x items), plus every row's SAE statistics O(rows)",
    "interpret": "at most InterpretConfig.max_rows rows (a seeded sample of users above it): O(rows) up to "
                 "it, then constant; the top-10 lists score those rows against every item, and the causal "
                 "tests a bounded number of (unit, row) pairs against every item: O(rows x items) and O(items)",
    "steer": "a fixed sample of 2,000 users scored against every item per curve point: O(items)",
}
"""What each stage's cost is proportional to (why an exponent in interactions can exceed 1)."""


# -- sizes and the cached dataset ---------------------------------------------------------------


def size_options(scale: float, items: int | None = None, seq_len: tuple[int, int] = SEQ_LEN) -> dict[str, Any]:
    """The synthetic generator's options for ``scale`` x ML-1M (``items``: the catalogue, default
    scaled like the users)."""
    return {
        "seed": SEED,
        "n_users": max(2, round(ML1M["users"] * scale)),
        "n_items": items if items is not None else max(seq_len[1], round(ML1M["items"] * scale)),
        "min_seq_len": seq_len[0],
        "max_seq_len": seq_len[1],
    }


def save_dataset(ds: Any, folder: Path) -> None:
    """The generated interactions and item metadata, for the later stages' processes (.npy + JSON)."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("user", "item", "time"):
        np.save(folder / f"{name}.npy", getattr(ds, name), allow_pickle=False)
    meta = {"info": ds.info, "title": list(ds.item_meta.title), "concept": [list(c) for c in ds.item_meta.multi["concept"]]}
    (folder / "meta.json").write_text(json.dumps(meta))


def load_split(folder: Path) -> Any:
    """The dataset saved by ``save_dataset``, split as the data stage split it."""
    import numpy as np

    from recsae.data.dataset import InteractionDataset, ItemMeta
    from recsae.data.split import make_split

    meta = json.loads((folder / "meta.json").read_text())
    arrays = {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in ("user", "item", "time")}
    n_users = int(meta["info"]["config"]["n_users"])
    titles = meta["title"]
    ds = InteractionDataset(
        name="synthetic",
        user_ids=np.array(["", *(f"u{u}" for u in range(1, n_users + 1))]),
        item_ids=np.array(["", *(f"i{i}" for i in range(1, len(titles)))]),
        item_meta=ItemMeta(title=titles, multi={"concept": [tuple(c) for c in meta["concept"]]}, text={"title": list(titles)}),
        info=meta["info"],
        **arrays,
    )
    return make_split(ds, "leave-one-out")


# -- the stages (each runs in the worker process) -----------------------------------------------


def _model(split: Any, weights: Path | None = None) -> Any:
    from recsae.models.registry import model_class, model_config
    from recsae.pipeline import preset

    model_opts, _ = preset("synthetic", "sasrec")
    model = model_class("sasrec")(model_config("sasrec", **model_opts), split.n_users, split.n_items)
    if weights is not None:
        from recsae.io import read_tensors

        model.load_state_dict(read_tensors(weights))
    return model.eval()


def stage_data(work: Path, opts: dict[str, Any]) -> dict[str, Any]:
    from recsae.data.split import make_split
    from recsae.data.synthetic import SyntheticConfig, generate_synthetic

    t0 = time.perf_counter()
    ds = generate_synthetic(SyntheticConfig(**opts["synthetic"])).dataset
    generated = time.perf_counter() - t0
    split = make_split(ds, "leave-one-out")
    seconds = time.perf_counter() - t0
    save_dataset(ds, work / "data")
    return {"seconds": seconds, "generate_seconds": generated, "split_seconds": seconds - generated,
            "users": ds.n_users, "items": ds.n_items, "interactions": ds.n_interactions,
            "train_interactions": len(split.train.values)}


def stage_model(work: Path, opts: dict[str, Any]) -> dict[str, Any]:
    import torch

    from recsae.io import write_tensors
    from recsae.models.trainer import evaluate_model
    from recsae.pipeline import scaled_preset
    from recsae.utils import seed_everything

    split = load_split(work / "data")
    _, train_opts = scaled_preset("synthetic", "sasrec", split)  # the run's, for this much data
    gen = seed_everything(SEED)
    model = _model(split).train()
    tensors = model.training_tensors(split)
    opt = torch.optim.Adam(model.parameters(), lr=train_opts["lr"])
    batches = model.batches(tensors, train_opts["batch_size"], gen)
    t0 = time.perf_counter()
    done = 0
    for idx in batches:  # the trainer's epoch (recsae.models.trainer.train_model)
        opt.zero_grad(set_to_none=True)
        model.loss(tuple(t[idx] for t in tensors), gen).backward()
        opt.step()
        done += 1
        if time.perf_counter() - t0 > opts["model_seconds"]:
            break
    measured = time.perf_counter() - t0
    epoch = measured * len(batches) / done
    t1 = time.perf_counter()
    valid = evaluate_model(model, split, "valid", ks=(10, 20))
    eval_seconds = time.perf_counter() - t1
    write_tensors(work / "model.safetensors", {k: v.detach() for k, v in model.state_dict().items()})
    return {"seconds": epoch + eval_seconds, "train_seconds": epoch, "valid_eval_seconds": eval_seconds,
            "batches": len(batches), "batches_measured": done, "fraction_measured": done / len(batches),
            "training_rows": len(tensors[0]), "valid_ndcg@10": valid.metrics["ndcg@10"]}


def stage_harvest(work: Path, opts: dict[str, Any]) -> dict[str, Any]:
    from recsae.probe.harvest import harvest

    split = load_split(work / "data")
    model = _model(split, work / "model.safetensors")
    t0 = time.perf_counter()
    store = harvest(model, split, work / "activations")
    seconds = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in (work / "activations").iterdir())
    return {"seconds": seconds, "rows": store.n_rows, "store_mb": size / 2**20, "shards": len(store.shards)}


def _sae_configs(d: int) -> tuple[Any, Any]:
    from recsae.config import SaeOptions
    from recsae.defaults import DEFAULT_K, MAX_EXPANSION
    from recsae.sae import SaeConfig, SaeTrainConfig

    # the run's widest SAE: what its rule chooses for the default synthetic data and larger
    cfg = SaeConfig(d_in=d, expansion=MAX_EXPANSION, k=DEFAULT_K, aux_relu=SaeOptions().aux_relu)
    return cfg, SaeTrainConfig(epochs=1, min_rows=0, seed=SEED)


def stage_sae(work: Path, opts: dict[str, Any]) -> dict[str, Any]:
    import shutil

    from recsae.probe.store import ActivationStore
    from recsae.sae.train import train_sae
    from recsae.sae_stage import sae_rows

    store = ActivationStore.open(work / "activations")
    cfg, train_cfg = _sae_configs(store.d)
    train_rows, valid_rows = sae_rows(store)
    shutil.rmtree(work / "sae", ignore_errors=True)
    t0 = time.perf_counter()
    res = train_sae(store.view(train_rows), cfg, train_cfg, valid=store.view(valid_rows), out_dir=work / "sae")
    seconds = time.perf_counter() - t0
    rec = res.history[-1]
    return {"seconds": seconds, "train_rows": len(train_rows), "valid_rows": len(valid_rows),
            "train_seconds": rec["seconds"], "rows_per_s": rec["rows_per_s"], "valid_fvu": rec["valid_fvu"],
            "latents": cfg.m, "k": cfg.k}


def stage_splice(work: Path, opts: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from recsae.sae.model import TopKSAE
    from recsae.sae_stage import run_sae_stage

    split = load_split(work / "data")
    model = _model(split, work / "model.safetensors")
    sae = TopKSAE.load(work / "sae")
    _, train_cfg = _sae_configs(sae.cfg.d_in)
    eval_users = split.eval_users("test")
    users = min(len(eval_users), max(100, round(opts.get("splice_budget", SPLICE_BUDGET) / (split.n_items + 1))))
    if users == len(eval_users):
        t0 = time.perf_counter()
        stage = run_sae_stage(model, split, work, sae.cfg, train_cfg, given=sae).splice
        assert stage is not None  # one process
        return {"seconds": time.perf_counter() - t0, "users": len(stage.users), "fraction_measured": 1.0,
                "spliced_ndcg@10": stage.conditions["spliced"].metrics["ndcg@10"]}
    # run_sae_stage's steps after training: those over the store's rows whole, the ranking of the
    # five conditions (users x items) on a seeded sample of the users, extrapolated to all of them
    from recsae.probe.store import ActivationStore
    from recsae.rundir import RunDir
    from recsae.sae.metrics import evaluate_sae
    from recsae.sae.model import untrained_baseline
    from recsae.sae_stage import sae_rows
    from recsae.splice import evaluate_splice

    store = ActivationStore.open(work / "activations")
    train_rows, valid_rows = sae_rows(store)
    t0 = time.perf_counter()
    train_x = store.view(train_rows)
    evaluate_sae(sae, store.view(valid_rows))
    mean = train_x.mean().astype(np.float32)
    random_sae = untrained_baseline(sae.cfg, train_x, train_cfg.seed)
    random_sae.save(work / RunDir.RANDOM_SAE)
    evaluate_sae(sae, store.view())
    rows_seconds = time.perf_counter() - t0
    sample = np.sort(np.random.default_rng(SEED).choice(eval_users, size=users, replace=False))
    t1 = time.perf_counter()
    sampled = evaluate_splice(model, sae, split, "test", mean=mean, random_sae=random_sae, users=sample, seed=train_cfg.seed)
    users_seconds = time.perf_counter() - t1
    return {"seconds": rows_seconds + users_seconds * len(eval_users) / users, "rows_seconds": rows_seconds,
            "sample_seconds": users_seconds, "users": len(eval_users), "users_measured": users,
            "fraction_measured": users / len(eval_users),
            "spliced_ndcg@10": sampled.conditions["spliced"].metrics["ndcg@10"]}


def stage_interpret(work: Path, opts: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    import recsae.interpret.api as api
    from recsae.interpret.api import InterpretConfig, interpret, write_interpretation
    from recsae.interpret.from_run import run_inputs
    from recsae.probe.store import ActivationStore
    from recsae.rundir import RunDir
    from recsae.sae.model import TopKSAE

    split = load_split(work / "data")
    model = _model(split, work / "model.safetensors")
    sae = TopKSAE.load(work / "sae")
    random_sae = TopKSAE.load(work / RunDir.RANDOM_SAE)
    store = ActivationStore.open(work / "activations")
    # the causal tests score each tested (unit, row) pair against every item: above
    # --causal-budget items, a seeded share of each family's tested units is tested, its time
    # extrapolated to all of them
    fraction = min(1.0, opts.get("causal_budget", CAUSAL_BUDGET) / (split.n_items + 1))
    causal = {"seconds": 0.0, "units": 0, "units_measured": 0}
    whole = api.causal_faithfulness

    def sampled(score_fn: Any, reps: Any, edits: Any, unit_concept: Any, tested: Any, *args: Any) -> Any:
        tested = np.asarray(tested, dtype=bool).copy()
        units = np.flatnonzero(tested)
        keep = np.random.default_rng(SEED).permutation(len(units))[: math.ceil(fraction * len(units))]
        tested[:] = False
        tested[units[keep]] = True
        t = time.perf_counter()
        out = whole(score_fn, reps, edits, unit_concept, tested, *args)
        causal["seconds"] += time.perf_counter() - t
        causal["units"] += len(units)
        causal["units_measured"] += len(keep)
        return out

    api.causal_faithfulness = sampled  # type: ignore[assignment]
    t0 = time.perf_counter()
    inputs = run_inputs(model, sae, store, split, seed=SEED, random_sae=random_sae)
    prepared = time.perf_counter() - t0
    result = interpret(**inputs, cfg=InterpretConfig())
    write_interpretation(result, work)
    measured = time.perf_counter() - t0
    share = causal["units_measured"] / max(causal["units"], 1)
    extra = causal["seconds"] / share - causal["seconds"] if share > 0 else 0.0
    return {"seconds": measured + extra, "seconds_measured": measured, "inputs_seconds": prepared,
            "causal_seconds_measured": causal["seconds"], "causal_units": causal["units"],
            "causal_units_measured": causal["units_measured"], "fraction_measured": share if causal["units"] else 1.0,
            "rows": len(inputs["reps"]), "store_rows": store.n_rows, "interpretable": result.summary.get("n_interpretable")}


def stage_steer(work: Path, opts: dict[str, Any]) -> dict[str, Any]:
    from recsae.data.dataset import item_popularity
    from recsae.interpret import build_vocabulary
    from recsae.interpret.api import read_interpretation
    from recsae.sae.model import TopKSAE
    from recsae.steer import ConceptItems
    from recsae.steer.study import SteerConfig, run_steer

    split = load_split(work / "data")
    model = _model(split, work / "model.safetensors")
    sae = TopKSAE.load(work / "sae")
    table = read_interpretation(work)
    run_users = SteerConfig().max_users or split.n_users
    users = min(run_users, opts["steer_users"])
    t0 = time.perf_counter()
    meta = split.dataset.item_meta
    items = ConceptItems.from_vocabulary(meta, build_vocabulary(meta, item_popularity(split.train.values, split.n_items)))
    run_steer(model, sae, split, table, items, SteerConfig(max_users=users))
    measured = time.perf_counter() - t0
    # each of the study's measurements scores its users against every item: linear in the users
    return {"seconds": measured * run_users / users, "seconds_measured": measured, "users_measured": users,
            "users_in_a_run": run_users, "fraction_measured": users / run_users}


STAGE_FNS: dict[str, Callable[[Path, dict[str, Any]], dict[str, Any]]] = {
    "data": stage_data, "model": stage_model, "harvest": stage_harvest, "sae": stage_sae,
    "splice": stage_splice, "interpret": stage_interpret, "steer": stage_steer,
}


# -- measuring a stage ------------------------------------------------------------------------


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status in MB (0 where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class AnonPeak:
    """Samples the process's anonymous resident memory (``RssAnon``) every ``interval`` seconds."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak = _status_mb("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _status_mb("RssAnon"))

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_mb("RssAnon"))


def measure(stage: str, work: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """Run ``stage`` in this process: its figures, peak memory and the load around it."""
    import recsae.sae  # noqa: F401  (torch and the package imported before the baseline)

    base = _status_mb("VmRSS")
    load_before = os.getloadavg()
    with AnonPeak() as anon:
        figures = STAGE_FNS[stage](work, opts)
    return figures | {
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_anon_mb": anon.peak,
        "base_rss_mb": base,
        "load_average": [load_before[0], os.getloadavg()[0]],
    }


def run_stage(stage: str, work: Path, opts: dict[str, Any], in_process: bool) -> dict[str, Any]:
    """``measure`` in a fresh Python process (``in_process``: in this one, for tests)."""
    if in_process:
        return measure(stage, work, opts)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", stage, "--work", str(work),
           "--worker-options", json.dumps(opts)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the whole benchmark ----------------------------------------------------------------------


def exponents(sizes: list[dict[str, Any]], stages: list[str], key: str = "seconds",
              size: Callable[[dict[str, Any]], float] = lambda s: s["interactions"]) -> dict[str, dict[str, float]]:
    """Per stage, the log-log slope of the stage's ``key`` against ``size`` (default: the
    interactions) between consecutive sizes and between the smallest and the largest."""
    out: dict[str, dict[str, float]] = {}
    pairs = list(itertools.pairwise(sizes))
    if len(sizes) > 2:
        pairs.append((sizes[0], sizes[-1]))
    for stage in stages:
        slopes = {}
        for a, b in pairs:
            ta, tb = a["stages"].get(stage, {}).get(key), b["stages"].get(stage, {}).get(key)
            if ta and tb and ta > 0 and tb > 0 and size(b) != size(a):
                slopes[f"{a['scale']:g}x-{b['scale']:g}x"] = math.log(tb / ta) / math.log(size(b) / size(a))
        out[stage] = slopes
    return out


def format_table(result: dict[str, Any]) -> str:
    """Stages x sizes: seconds, peak RSS and peak anonymous memory (MB), then the exponents."""
    sizes, stages = result["sizes"], result["stages"]
    head = f"{'stage':<10}" + "".join(f" {str(s['scale']) + 'x s':>11} {'RSS MB':>7} {'anon MB':>7}" for s in sizes)
    lines = [head, "-" * len(head)]
    for stage in stages:
        cells = []
        for s in sizes:
            f = s["stages"].get(stage)
            cells.append(f" {f['seconds']:11.1f} {f['peak_rss_mb']:7.0f} {f['peak_anon_mb']:7.0f}" if f else f" {'-':>11} {'-':>7} {'-':>7}")
        slopes = result["exponents"].get(stage, {})
        lines.append(f"{stage:<10}" + "".join(cells) + "   " + "  ".join(f"{k}: {v:.2f}" for k, v in slopes.items()))
    return "\n".join(lines)


def markdown_table(result: dict[str, Any]) -> str:
    """The results as a Markdown table (stages x sizes: seconds, peak RSS / peak anonymous MB, and
    the growth exponents in interactions), for the README."""
    sizes, stages = result["sizes"], result["stages"]
    head = ["stage", *(f"{s['scale']:g}x: s (RSS / anon MB)" for s in sizes), *result["exponents"][stages[0]]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for stage in stages:
        cells = [stage]
        for s in sizes:
            f = s["stages"].get(stage)
            mark = "*" if f and f.get("fraction_measured", 1.0) < 1.0 else ""
            cells.append(f"{f['seconds']:,.0f}{mark} ({f['peak_rss_mb']:,.0f} / {f['peak_anon_mb']:,.0f})" if f else "-")
        cells += [f"{v:.2f}" for v in result["exponents"][stage].values()]
        lines.append("| " + " | ".join(cells) + " |")
    sizes_line = ", ".join(f"{s['scale']:g}x = {s['users']:,} users, {s['items']:,} items, {s['interactions']:,} "
                           "interactions" for s in sizes)
    return "\n".join(lines) + f"\n\nSizes: {sizes_line}. * measured on a fraction and extrapolated (see the JSON)."


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 4.0, 16.0], help="sizes, in multiples of ML-1M")
    ap.add_argument("--large-items", type=int, default=100_000, help="least catalogue of the largest size")
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--model-seconds", type=float, default=600.0,
                    help="longest measured part of a model epoch; a longer epoch is extrapolated from it")
    ap.add_argument("--steer-budget", type=float, default=2000 * ML1M["items"],
                    help="users x items of the steering study's sample; fewer users for larger catalogues")
    ap.add_argument("--splice-budget", type=float, default=SPLICE_BUDGET,
                    help="users x items of the splice ranking measured; a sample of the users above it")
    ap.add_argument("--causal-budget", type=float, default=CAUSAL_BUDGET,
                    help="items up to which the causal tests run on every tested unit; a share of them above")
    ap.add_argument("--seq-len", type=int, nargs=2, default=list(SEQ_LEN), metavar=("MIN", "MAX"))
    ap.add_argument("--work", type=Path, default=None, help="folder for the sizes' data (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--in-process", action="store_true", help="run the stages in this process (tests)")
    ap.add_argument("--markdown", type=Path, default=None, help="print a results file as a Markdown table and exit")
    ap.add_argument("--update", type=Path, default=None,
                    help="rerun --stages at --scales of this results file (their data in --work) and rewrite it")
    ap.add_argument("--worker", choices=STAGES, help=argparse.SUPPRESS)
    ap.add_argument("--worker-options", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.worker, args.work, json.loads(args.worker_options))))
        return None
    if args.markdown:
        print(markdown_table(json.loads(args.markdown.read_text())))
        return None

    from recsae.io import write_json

    load_start = os.getloadavg()
    old = json.loads(args.update.read_text()) if args.update else None
    with tempfile.TemporaryDirectory() as tmp:
        root = args.work or Path(tmp)
        sizes = old["sizes"] if old else []
        for i, scale in enumerate(sorted(args.scales)):
            if old:  # the size measured before, its data still in --work
                size = next((s for s in sizes if s["scale"] == scale), None)
                if size is None or args.work is None:
                    ap.error(f"--update needs --work holding the data of a size measured in {args.update}")
                synthetic = size["synthetic"]
            else:
                items = None
                if i == len(args.scales) - 1 and len(args.scales) > 1:
                    items = max(args.large_items, round(ML1M["items"] * scale))
                synthetic = size_options(scale, items, tuple(args.seq_len))
                size = {"scale": scale, "synthetic": synthetic, "stages": {}}
                sizes.append(size)
            work = root / f"x{scale:g}"
            work.mkdir(parents=True, exist_ok=True)
            steer_users = max(100, round(args.steer_budget / synthetic["n_items"]))
            opts = {"synthetic": synthetic, "model_seconds": args.model_seconds, "steer_users": steer_users,
                    "splice_budget": args.splice_budget, "causal_budget": args.causal_budget}
            for stage in args.stages:
                print(f"{scale:g}x {stage} ...", flush=True)
                size["stages"][stage] = fig = run_stage(stage, work, opts, args.in_process)
                print(f"  {fig['seconds']:.1f} s, peak RSS {fig['peak_rss_mb']:.0f} MB, anon {fig['peak_anon_mb']:.0f} MB",
                      flush=True)
                if old:
                    size.setdefault("rerun", []).append(stage)
            data = size["stages"].get("data", {})
            size.update(interactions=data.get("interactions"), users=data.get("users"), items=data.get("items"))
    result = summary(sizes, old["stages"] if old else args.stages, load_start)
    if old:
        result["load_average"] = old["load_average"] | {"reruns": [load_start, os.getloadavg()]}
    print(format_table(result))
    print(markdown_table(result))
    out = args.update or args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    print(f"saved {out}")
    return result


def summary(sizes: list[dict[str, Any]], stages: list[str], load_start: tuple[float, ...]) -> dict[str, Any]:
    """The results file: the sizes' figures, the exponents and how they were measured."""
    import torch

    from recsae.utils import environment_info

    result = {
        "what": "per stage of a run: seconds (training stages: one epoch) and peak memory, synthetic data at "
                "multiples of ML-1M's interactions",
        "reference": ML1M,
        "stages": stages,
        "sizes": sizes,
        "exponents": exponents(sizes, stages),
        "exponents_users_x_items": exponents(sizes, stages, size=lambda s: s["users"] * s["items"]),
        "exponents_peak_anon_mb": exponents(sizes, stages, key="peak_anon_mb"),
        "growth": {stage: GROWTH[stage] for stage in stages},
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "memory": "peak_rss_mb: ru_maxrss of the stage's own process (its allocations plus the memory-mapped "
                  "pages it touched; base_rss_mb of it is the interpreter and torch); peak_anon_mb: peak "
                  "RssAnon sampled every 20 ms",
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "environment": environment_info(),
    }
    if sizes and all(s in sizes[-1]["stages"] for s in ("harvest", "sae", "interpret")):
        big = sizes[-1]["stages"]
        result["largest_peak_rss_mb_harvest_sae_interpret"] = max(big[s]["peak_rss_mb"] for s in ("harvest", "sae", "interpret"))
    return result

if __name__ == "__main__":
    main()
