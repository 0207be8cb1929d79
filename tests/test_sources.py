"""Every model source goes through every stage from the CLI (ml-100k): a ``recsae train``
checkpoint, a trained SAE, the user's own model (``--model-from``) and exported embeddings."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from recsae.errors import ConfigError, DataError
from recsae.io import read_json
from recsae.sources import _in_split_order, _reinitialised, load_function, weights_digest

pytestmark = pytest.mark.slow

# a small SAE and few passes: these tests check that the stages compose, not the SAE's quality
FAST = ["--expansion", "4", "--sae-epochs", "2", "--sae-min-rows", "0", "--threads", "1"]

USER_MODEL = '''
import torch
from torch import nn

from recsae.models import DotProductModel


class MatrixFactorization(nn.Module):
    def __init__(self, n_users, n_items, dim=16):
        super().__init__()
        self.users = nn.Embedding(n_users + 1, dim)
        self.items = nn.Embedding(n_items + 1, dim, padding_idx=0)


def build(split):
    """A user's own model: matrix factorisation fitted by a few full-batch steps of their code."""
    torch.manual_seed(SEED)
    mf = MatrixFactorization(split.n_users, split.n_items)
    train = split.train
    users = torch.from_numpy(np.repeat(np.arange(len(train.indptr) - 1), np.diff(train.indptr)))
    items = torch.from_numpy(train.values)
    opt = torch.optim.Adam(mf.parameters(), lr=0.05)
    for _ in range(20):
        scores = mf.users(users) @ mf.items.weight.T
        loss = nn.functional.cross_entropy(scores, items)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return DotProductModel(mf, represent=lambda m, u, s: m.users(u), item_embeddings=lambda m: m.items.weight)
'''


def _user_model(folder: Path, seed: int) -> Path:
    path = folder / "my_model.py"
    path.write_text("import numpy as np\n" + textwrap.dedent(USER_MODEL).replace("SEED", str(seed)))
    return path


def _ok(run_cli, argv: list[str]) -> str:
    code, out, err = run_cli(argv)
    assert code == 0, err
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    from recsae.cli import main

    out = tmp_path_factory.mktemp("ckpt") / "bpr"
    try:
        main(["train", "--dataset", "ml-100k", "--data-root", str(data_root), "--model", "bpr", "--epochs", "2",
              "--out", str(out), "--threads", "1"])
    except SystemExit as exc:
        assert not exc.code
    return out


def _assert_reported(run: Path, source: str) -> dict:
    summary = read_json(run / "summary.json")
    assert summary["model"]["source"] == source
    assert summary["dataset"]["name"] == "ml-100k"
    assert summary["interpret"]["n_alive"] > 0
    assert (run / "interpretation.parquet").is_file() and (run / "steer.json").is_file()
    html = (run / "report" / "index.html").read_text()
    assert "ml-100k" in html and "latent" in html.lower()
    return summary


def test_a_checkpoint_goes_through_every_stage_on_the_data_it_records(
    run_cli, checkpoint: Path, data_root: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    # no --dataset: the checkpoint's recorded ml-100k split is used
    _ok(run_cli, ["run", "--checkpoint", str(checkpoint), "--data-root", str(data_root), "--out", str(run),
                  "--concept", "genre=Drama", "--no-causal", *FAST])
    summary = _assert_reported(run, "checkpoint")
    assert _sha(run / "model" / "model.safetensors") == _sha(checkpoint / "model.safetensors")
    assert summary["config"]["model"]["checkpoint"] == str(checkpoint)
    # the controls include the untrained model of the checkpoint's architecture
    assert (run / "controls" / "random_model" / "sae" / "cfg.json").is_file()
    # steering a dot-product model: the edited h re-ranked by h . E moved the concept's share
    steer = summary["steer"]["genre=Drama"]
    assert steer["share_after"] != steer["share_before"]

    # the SAE that run trained, given to another run of the same checkpoint, is used as it is
    again = tmp_path / "again"
    _ok(run_cli, ["run", "--checkpoint", str(checkpoint), "--data-root", str(data_root), "--out", str(again),
                  "--sae", str(run / "sae"), "--no-controls", "--no-causal", *FAST])
    second = _assert_reported(again, "checkpoint")
    assert _sha(again / "sae" / "sae.safetensors") == _sha(run / "sae" / "sae.safetensors")
    assert second["sae"]["given"] == str(run / "sae")
    assert second["sae"]["fvu"] == pytest.approx(summary["sae"]["fvu"])


def test_an_sae_of_another_width_is_refused_naming_both_widths(run_cli, checkpoint: Path, data_root: Path,
                                                               tmp_path: Path) -> None:
    from recsae.sae.config import SaeConfig
    from recsae.sae.model import TopKSAE

    TopKSAE(SaeConfig(d_in=8, expansion=2, k=2)).save(tmp_path / "sae")
    code, _, err = run_cli(["run", "--checkpoint", str(checkpoint), "--data-root", str(data_root),
                            "--out", str(tmp_path / "run"), "--sae", str(tmp_path / "sae"), *FAST])
    assert code == 2 and "d = 8" in err and "d = 64" in err


def test_the_users_own_model_goes_through_every_stage_and_a_changed_model_redoes_them(
    run_cli, data_root: Path, tmp_path: Path
) -> None:
    spec = f"{_user_model(tmp_path, seed=0)}:build"
    run = tmp_path / "run"
    argv = ["run", "--dataset", "ml-100k", "--data-root", str(data_root), "--model-from", spec, "--out", str(run),
            "--no-causal", *FAST]
    _ok(run_cli, argv)
    summary = _assert_reported(run, "function")
    assert summary["model"]["name"] == "custom"
    assert summary["model"]["test"]["ndcg@10"] > 0
    assert (run / "controls" / "random_model" / "sae" / "cfg.json").is_file()  # its layers, reinitialised
    store = (run / "activations" / "meta.json").stat().st_mtime_ns

    # the model and SAE stages again: nothing changed, nothing is redone
    _ok(run_cli, [*argv, "--stages", "sae"])
    assert (run / "activations" / "meta.json").stat().st_mtime_ns == store
    _user_model(tmp_path, seed=1)  # the user's code changed under the same options
    _ok(run_cli, [*argv, "--stages", "sae"])
    changed = read_json(run / "summary.json")
    assert changed["model"]["weights_sha256"] != summary["model"]["weights_sha256"]
    assert (run / "activations" / "meta.json").stat().st_mtime_ns != store
    assert changed["sae"]["fvu"] != summary["sae"]["fvu"]


def test_exported_embeddings_in_any_row_order_go_through_every_stage(run_cli, data_root: Path, tmp_path: Path) -> None:
    from recsae.data.registry import load_dataset
    from recsae.data.split import make_split

    # a model outside PyTorch: a truncated SVD of the training matrix, rows in a shuffled order
    split = make_split(load_dataset("ml-100k", data_root=data_root), "auto", seed=0)
    matrix = np.zeros((split.n_users, split.n_items), dtype=np.float32)
    for u in range(1, split.n_users + 1):
        matrix[u - 1, split.train.values[split.train.indptr[u]:split.train.indptr[u + 1]] - 1] = 1.0
    left, sing, right = np.linalg.svd(matrix, full_matrices=False)
    users, items = left[:, :16] * np.sqrt(sing[:16]), right[:16].T * np.sqrt(sing[:16])
    rng = np.random.default_rng(0)
    user_order, item_order = rng.permutation(split.n_users), rng.permutation(split.n_items)
    np.save(tmp_path / "users.npy", users[user_order])
    np.save(tmp_path / "items.npy", items[item_order])
    ids = split.dataset
    (tmp_path / "users.txt").write_text("\n".join(str(ids.user_ids[i + 1]) for i in user_order))
    (tmp_path / "items.txt").write_text("\n".join(str(ids.item_ids[i + 1]) for i in item_order))
    run = tmp_path / "run"
    _ok(run_cli, ["run", "--dataset", "ml-100k", "--data-root", str(data_root), "--out", str(run),
                  "--user-vectors", str(tmp_path / "users.npy"), "--item-embeddings", str(tmp_path / "items.npy"),
                  "--user-ids", str(tmp_path / "users.txt"), "--item-ids", str(tmp_path / "items.txt"),
                  "--no-causal", *FAST])
    summary = _assert_reported(run, "embeddings")
    # rows mapped back through the id files: the SVD ranks like the SVD, well above counting
    assert summary["model"]["test"]["ndcg@10"] > summary["baseline"]["most_popular"]["test"]["ndcg@10"]


def test_rows_are_mapped_to_the_split_through_the_id_file_and_every_id_needs_a_row(tmp_path: Path) -> None:
    split_ids = np.array(["", "a", "b", "c"], dtype=object)
    x = np.array([[3.0], [1.0], [9.0], [2.0]], dtype=np.float32)  # rows for c, a, z (not in the data), b
    (tmp_path / "ids.txt").write_text("c\na\nz\nb\n")
    table = _in_split_order(x, str(tmp_path / "ids.txt"), split_ids, "item", "items.npy")
    assert table[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    (tmp_path / "ids.txt").write_text("c\na\nz\nz\n")
    with pytest.raises(DataError, match=r"1 of the dataset's items have no row \(e.g. ids \['b'\]\)"):
        _in_split_order(x, str(tmp_path / "ids.txt"), split_ids, "item", "items.npy")
    with pytest.raises(DataError, match="give --item-ids"):
        _in_split_order(x[:2], None, split_ids, "item", "items.npy")


def test_a_bad_model_from_spec_is_a_one_line_error(tmp_path: Path) -> None:
    for spec, message in [("no_colon", "expected module:function"), ("no_such_module_xyz:f", "cannot import"),
                          (f"{tmp_path / 'missing.py'}:f", "not found"), ("json:no_such_function", "no function")]:
        with pytest.raises(ConfigError, match=message):
            load_function(spec)


def test_two_model_sources_at_once_are_refused(run_cli, tmp_path: Path) -> None:
    code, _, err = run_cli(["run", "--out", str(tmp_path / "run"), "--model-from", "json:loads",
                            "--checkpoint", str(tmp_path)])
    assert code == 2 and "one source of the model" in err and not (tmp_path / "run").exists()


def test_reinitialising_resets_every_layer_and_leaves_the_trained_model_alone() -> None:
    from recsae.models import DotProductModel

    module = torch.nn.Embedding(5, 3)
    torch.nn.init.constant_(module.weight, 7.0)
    model = DotProductModel(module, represent=lambda m, u, s: m(u), item_embeddings=lambda m: m.weight)
    before = weights_digest(model)
    fresh = _reinitialised(model, seed=0)
    assert fresh is not None and not torch.all(fresh.module.weight == 7.0)
    assert weights_digest(model) == before
    again = _reinitialised(model, seed=0)
    assert again is not None and weights_digest(again) == weights_digest(fresh)  # seeded
