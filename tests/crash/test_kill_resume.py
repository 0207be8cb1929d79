"""Crash suite: ``recsae run`` killed with SIGKILL inside each stage (once with SIGTERM in the
model's training), then rerun to completion.

A killed run is rerun with the very same command; it must finish (exit code 0), leave no
temporaries anywhere below the run folder, and write artefacts byte-identical to those of an
uninterrupted run with the same options.

The data is a small synthetic catalogue written as a plain table (the CLI cannot shrink the
built-in synthetic set), sized so that every stage lasts long enough to be killed inside it:
on a 2-core machine the stages take about data 0.5 s, model 4.5 s, sae 2.5 s (1 s of it the
controls), interpret 1.4 s, steer 3 s, report 0.2 s. The run trains the controls (an SAE of the
untrained model, a second-seed SAE) and interprets them, so kills also land while they train.
The kill points are seeded random delays after the stage's ``== <stage>`` line on stderr, each
well below its stage's length; the report stage is too short to hit reliably, so its kill is
sent as soon as its line appears.
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from recsae.cli import INTERRUPTED
from recsae.data.synthetic import SyntheticConfig, generate_synthetic

SRC = Path(__file__).resolve().parents[2] / "src"
STAGES = ("data", "model", "sae", "interpret", "steer", "report")
STAGE_LINE = re.compile(r"== (\w+)")

# the longest delay after a stage's line before the kill, per stage (about half its length
# here, so the kill lands inside it with room to spare on a faster machine); report: at once
MAX_DELAY = {"data": 0.2, "model": 2.0, "sae": 0.6, "interpret": 0.5, "steer": 1.5, "report": 0.0}

# what must be byte-identical to the uninterrupted run (besides the store's shards, globbed)
COMPARED = ("model/model.safetensors", "sae/sae.safetensors", "activations/index.parquet",
            "interpretation.parquet",
            # the controls: the untrained model's activations and SAE, the second-seed SAE
            "controls/random_model/activations/index.parquet", "controls/random_model/sae/sae.safetensors",
            "controls/seed_sae/sae/sae.safetensors",
            # beyond the artefacts asked for, these hold no wall times or paths either
            "random_sae/sae.safetensors", "splice.json", "interpret.json", "report_data/latent_examples.json")
STORES = ("activations", "controls/random_model/activations")
"""Activation stores whose shards (``*.npy``) are compared too."""
# not compared: files holding wall times (summary.json, model/config.json, model/train_state.json,
# sae/train_log.jsonl, sae/train_state/state.json, report/index.html) or the run folder's path
# (activations/meta.json records the model checkpoint it read)

# keys of steer.json left out of its comparison: "versions" and "environment" describe the
# machine and the installed libraries (platform, library versions, torch threads, CUDA), not
# the result. steer.json holds no wall times (no "seconds"-like key), so nothing else is dropped.
STEER_DROPPED = ("versions", "environment")

TEMPORARY = re.compile(r"\..+\.(?:[a-z0-9_]+\.tmp|partial-[a-z0-9_]+|old-[a-z0-9_]+)")
"""Names of the temporaries recsae writes beside an output (``recsae.io``): ``.NAME.XXXXXXXX.tmp``,
``.NAME.partial-XXXXXXXX`` and ``.NAME.old-XXXXXXXX``."""


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    return os.environ | {"PYTHONPATH": path}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic interaction log and item table (400 users, 200 items, 6 planted concepts)."""
    folder = tmp_path_factory.mktemp("data")
    cfg = SyntheticConfig(seed=3, n_users=400, n_items=200, n_concepts=6, min_seq_len=12, max_seq_len=20)
    ds = generate_synthetic(cfg).dataset
    rows = [f"{ds.user_ids[u]},{ds.item_ids[i]},{int(t)}\n" for u, i, t in zip(ds.user, ds.item, ds.time, strict=True)]
    (folder / "log.csv").write_text("user_id,item_id,timestamp\n" + "".join(rows))
    items = [f'{ds.item_ids[i]},"{ds.item_meta.title[i]}",{"|".join(ds.item_meta.multi["concept"][i])}\n'
             for i in range(1, len(ds.item_ids))]
    (folder / "items.csv").write_text("item_id,title,concept\n" + "".join(items))
    return folder


def _command(data: Path, out: Path) -> list[str]:
    # --no-causal keeps the interpret stage short; one named concept the steer stage (and the data
    # stage, which checks it); --threads 1 so that the reference and every rerun reduce in the same order
    return [sys.executable, "-m", "recsae", "run", "--dataset", str(data / "log.csv"), "--format", "table",
            "--item-table", str(data / "items.csv"), "--title-col", "title", "--multi-col", "concept",
            "--out", str(out), "--epochs", "3", "--k", "8", "--expansion", "4", "--sae-epochs", "2",
            "--sae-min-rows", "0", "--no-causal", "--concept", "concept=anime",
            "--seed", "3", "--threads", "1"]


def _complete(data: Path, out: Path) -> str:
    result = subprocess.run(_command(data, out), capture_output=True, text=True, env=_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    stderr = _complete(data, out)
    assert [m[1] for ln in stderr.splitlines() if (m := STAGE_LINE.fullmatch(ln))] == list(STAGES)
    assert (out / "controls" / "seed_sae" / "sae" / "sae.safetensors").is_file()
    return out


def _at_or_after(target: str) -> Callable[[str], bool]:
    """Whether a stderr line starts ``target`` or a later stage."""
    def anchor(line: str) -> bool:
        m = STAGE_LINE.fullmatch(line)
        return bool(m) and m[1] in STAGES and STAGES.index(m[1]) >= STAGES.index(target)
    return anchor


def _kill_in(
    data: Path, out: Path, anchor: Callable[[str], bool], delay: float, sig: signal.Signals = signal.SIGKILL
) -> tuple[str | None, list[str]]:
    """Start the run, send it ``sig`` (SIGKILL, or SIGTERM, which it answers by unwinding and
    exiting with code 143) ``delay`` seconds after the first stderr line for which ``anchor`` is
    true, and return the stage it was in when killed (the last stage line it wrote; None when it
    finished first) and its stderr lines."""
    proc = subprocess.Popen(_command(data, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=_env())
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        while (line := lines.get(timeout=120)) is not None:
            seen.append(line)
            if anchor(line):
                time.sleep(delay)
                break
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=60)
    while not lines.empty():
        if (line := lines.get()) is not None:
            seen.append(line)
    if proc.returncode != (-signal.SIGKILL if sig == signal.SIGKILL else 128 + sig):
        assert proc.returncode == 0, "\n".join(seen)
        return None, seen
    stages = [m[1] for ln in seen if (m := STAGE_LINE.fullmatch(ln))]
    return (stages[-1] if stages else None), seen


def _leftovers(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob(".*") if TEMPORARY.fullmatch(p.name))


def _steer(path: Path) -> dict[str, Any]:
    steer = json.loads(path.read_text())
    return {k: v for k, v in steer.items() if k not in STEER_DROPPED}


def _assert_same_artefacts(out: Path, reference: Path) -> None:
    shards = []
    for store in STORES:
        names = sorted(p.name for p in (reference / store).glob("*.npy"))
        assert names, f"the reference run wrote no activation shards in {store}"
        assert sorted(p.name for p in (out / store).glob("*.npy")) == names, store
        shards += [f"{store}/{name}" for name in names]
    for name in (*COMPARED, *shards):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), f"{name} differs from the reference run"
    assert _steer(out / "steer.json") == _steer(reference / "steer.json")


def test_temporary_pattern_matches_the_names_recsae_writes(tmp_path: Path) -> None:
    from recsae.io import atomic_path

    with atomic_path(tmp_path / "x.json") as tmp:
        assert TEMPORARY.fullmatch(tmp.name), tmp.name
    for name in (".shard-00000.npy.ab12cd34.tmp", ".activations.partial-ab12cd34", ".activations.old-ab_2cd34"):
        assert TEMPORARY.fullmatch(name)
    assert not TEMPORARY.fullmatch("model.safetensors")


def test_killed_in_every_stage_then_resumed_matches_the_uninterrupted_run(
    data: Path, reference: Path, tmp_path: Path,
) -> None:
    """One run folder killed once in each stage in turn: the first run from scratch is killed in
    the data stage, its rerun in the model stage, the next (which resumes the model) in the sae
    stage, and so on; so the kills from the model stage onward start from a folder whose earlier
    stages finished (in an earlier, itself killed and resumed, attempt), and the last rerun completes."""
    rng = random.Random(20261205)
    out = tmp_path / "run"
    hit: dict[str, list[str]] = {}
    for target in STAGES:
        delay = rng.uniform(0, MAX_DELAY[target])
        landed, _ = _kill_in(data, out, _at_or_after(target), delay)
        where = "after the run finished" if landed is None else f"in {landed}"
        print(f"kill aimed at {target} {delay:.3f} s after its line landed {where}")
        if landed is not None:
            hit.setdefault(landed, []).append(target)
        if landed != target:
            print(f"  {target} ended before the kill")
    assert set(hit) == set(STAGES), f"stages never killed inside: {sorted(set(STAGES) - set(hit))}"
    _complete(data, out)
    assert _leftovers(out) == []
    _assert_same_artefacts(out, reference)


def test_killed_mid_training_of_the_model_the_sae_and_each_control_then_resumed_matches_the_uninterrupted_run(
    data: Path, reference: Path, tmp_path: Path,
) -> None:
    """The kills of the other test land soon after a stage's line, mostly before the stage's
    first checkpoint; these land after one: in the model stage once its second epoch is logged
    (a SIGTERM, so the run exits 143 and the rerun resumes the trainer from the saved epoch: its
    random state, optimiser and history), then, in the rerun, in the sae stage once its first epoch is logged; then, in the
    next reruns, while the SAE of the untrained model trains (or its activations are harvested)
    and while the second-seed SAE trains."""
    rng = random.Random(20261206)
    out = tmp_path / "run"
    delay = rng.uniform(0, 0.4)
    # SIGTERM here: the run unwinds, says what is kept, leaves the saved epoch and no temporaries
    landed, lines = _kill_in(data, out, re.compile(r"epoch +2 .*").fullmatch, delay, signal.SIGTERM)
    print(f"SIGTERM {delay:.3f} s after the model's epoch 2 landed in {landed}")
    assert landed == "model", "the model stage ended before the kill: make the model's epochs longer"
    assert lines[-1] == INTERRUPTED and not any("Traceback" in ln for ln in lines), "\n".join(lines)
    assert _leftovers(out) == []
    delay = rng.uniform(0, 0.02)
    landed, lines = _kill_in(data, out, re.compile(r"sae epoch 1: .*").fullmatch, delay)
    print(f"kill {delay:.3f} s after the sae's epoch 1 landed in {landed}")
    assert any(re.fullmatch(r"resuming .* after epoch [12] .*", ln) for ln in lines), "\n".join(lines)
    assert landed is not None, "the run finished before the kill"
    for control, longest in (("harvesting and training an SAE on the untrained", 0.5), ("training the SAE again", 0.05)):
        delay = rng.uniform(0, longest)
        landed, lines = _kill_in(data, out, re.compile(f"controls: {control} .*").fullmatch, delay)
        print(f"kill {delay:.3f} s after the control line '{control}' landed in {landed}")
        assert landed == "sae", f"the sae stage ended before the kill in the control '{control}'"
    _complete(data, out)
    assert _leftovers(out) == []
    _assert_same_artefacts(out, reference)
