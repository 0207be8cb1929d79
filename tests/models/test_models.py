"""Built-in models: training step, probe contract (shapes, masks, padding), graph propagation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsae.data.dataset import Ragged, SplitData, input_sequences
from recsae.models.base import TrainableRecommender
from recsae.models.lightgcn import LightGCN, LightGCNConfig
from recsae.models.registry import MODELS, model_class, model_config

NAMES = sorted(MODELS)


def build(name: str, split: SplitData, **overrides: object) -> TrainableRecommender:
    torch.manual_seed(0)
    cfg = model_config(name, dim=8, **overrides)
    return model_class(name).build(cfg, split.n_users, split.n_items, split.train)


@pytest.mark.parametrize("name", NAMES)
def test_one_training_step_gives_finite_loss_and_gradients_for_every_parameter(name: str, split: SplitData) -> None:
    model = build(name, split)
    tensors = model.training_tensors(split)
    gen = torch.Generator().manual_seed(0)
    idx = model.batches(tensors, 16, gen)[0]
    loss = model.loss(tuple(t[idx] for t in tensors), gen)
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_bce_loss_with_sampled_negatives_trains(name: str, split: SplitData) -> None:
    model = build(name, split, loss="bce", n_negatives=3)
    tensors = model.training_tensors(split)
    gen = torch.Generator().manual_seed(0)
    loss = model.loss(tuple(t[:8] for t in tensors), gen)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_label_smoothing_mixes_the_target_loss_with_the_mean_loss_over_the_catalogue(name: str, split: SplitData) -> None:
    eps = 0.3
    smooth = build(name, split, label_smoothing=eps).eval()
    plain = build(name, split).eval()
    plain.load_state_dict(smooth.state_dict())
    tensors = smooth.training_tensors(split)
    batch = tuple(t[:8] for t in tensors)
    users, inputs, targets = batch
    with torch.no_grad():
        h = plain.hidden_states(users, inputs).states[targets > 0]
        logp = torch.log_softmax(h @ plain.item_embeddings()[1:].T, -1)
        target_nll = plain.loss(batch, torch.Generator())
        expected = (1 - eps) * target_nll - eps * logp.mean(-1).mean()
        torch.testing.assert_close(smooth.loss(batch, torch.Generator()), expected)
    assert expected != target_nll


@pytest.mark.parametrize(("opts", "message"), [({"label_smoothing": 1.0}, "label_smoothing must be in"),
                                               ({"label_smoothing": 0.1, "loss": "bce"}, "'ce' loss only")])
def test_bad_label_smoothing_is_a_config_error(opts: dict, message: str) -> None:
    from recsae.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        model_config("sasrec", **opts)


@pytest.mark.parametrize("name", NAMES)
def test_probe_shapes_and_score_is_dot_product_with_item_table(name: str, split: SplitData) -> None:
    model = build(name, split).eval()
    users = np.arange(1, 6)
    seqs = input_sequences(split.history("test"), users, 10)
    u = torch.from_numpy(users)
    h = model.represent(u, seqs)
    table = model.item_embeddings()
    assert h.shape == (5, 8) and table.shape == (split.n_items + 1, 8) and model.dim == 8
    torch.testing.assert_close(model.score(h), h @ table.T)
    hs = model.hidden_states(u, seqs)
    if model.sequential:
        assert hs.states.shape == (5, 10, 8)
        assert torch.equal(hs.mask, seqs > 0)
        torch.testing.assert_close(hs.states[:, -1], h)  # left padding: the last column is the last item
    else:
        assert hs.states.shape == (5, 1, 8) and hs.mask.all()
        torch.testing.assert_close(hs.states[:, 0], h)


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_states_do_not_depend_on_the_amount_of_left_padding(name: str, split: SplitData) -> None:
    model = build(name, split, max_len=16).eval()
    users = np.arange(1, 9)
    short = input_sequences(split.train, users, 12)
    wide = input_sequences(split.train, users, 16)
    u = torch.from_numpy(users)
    a, b = model.hidden_states(u, short), model.hidden_states(u, wide)
    torch.testing.assert_close(a.states[a.mask], b.states[b.mask], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["sasrec", "gru4rec"])
def test_a_position_never_sees_later_items(name: str, split: SplitData) -> None:
    model = build(name, split).eval()
    seqs = torch.tensor([[0, 0, 3, 4, 5, 6]])
    changed = seqs.clone()
    changed[0, -1] = 9
    u = torch.tensor([1])
    a, b = model.hidden_states(u, seqs).states, model.hidden_states(u, changed).states
    torch.testing.assert_close(a[:, :-1], b[:, :-1])
    assert not torch.allclose(a[:, -1], b[:, -1])


def test_inputs_longer_than_max_len_keep_the_latest_items(split: SplitData) -> None:
    model = build("sasrec", split, max_len=4).eval()
    u = torch.tensor([1])
    long = torch.tensor([[7, 8, 3, 4, 5, 6]])
    torch.testing.assert_close(model.represent(u, long), model.represent(u, long[:, -4:]))


def test_training_tensors_are_the_shifted_sequence_with_padding_targets_zero(split: SplitData) -> None:
    train = Ragged.from_lists([[], [5, 6, 7], [9]])
    split = SplitData(split.dataset, train, train, train, "leave-one-out")
    model = model_class("sasrec")(model_config("sasrec", dim=4, max_len=4), 2, 10)
    users, inputs, targets = model.training_tensors(split)
    assert users.tolist() == [1]  # a user needs two items to have a target
    assert inputs.tolist() == [[0, 0, 5, 6]]
    assert targets.tolist() == [[0, 0, 6, 7]]


def test_sequential_batches_cover_every_row_once(split: SplitData) -> None:
    model = build("sasrec", split)
    tensors = model.training_tensors(split)
    batches = model.batches(tensors, 7, torch.Generator().manual_seed(1))
    assert sorted(torch.cat(batches).tolist()) == list(range(len(tensors[0])))


def test_lightgcn_adjacency_is_symmetric_degree_normalised() -> None:
    # user 1 - items 1, 2; user 2 - item 2.  Node order: users 0..2, items 0..2 (row 0 padding).
    edges = (torch.tensor([1, 1, 2]), torch.tensor([1, 2, 2]))
    model = LightGCN(LightGCNConfig(dim=2, n_layers=1), 2, 2, edges)
    adj = model.adjacency().to_dense()
    torch.testing.assert_close(adj, adj.T)
    u1, u2, i1, i2 = 1, 2, 4, 5
    assert adj[u1, i1] == pytest.approx(1 / np.sqrt(2 * 1))
    assert adj[u1, i2] == pytest.approx(1 / np.sqrt(2 * 2))
    assert adj[u2, i2] == pytest.approx(1 / np.sqrt(1 * 2))
    assert adj.sum() == pytest.approx(2 * (1 / np.sqrt(2) + 1 / 2 + 1 / np.sqrt(2)))


def test_lightgcn_propagation_gradient_matches_dense_autograd(split: SplitData) -> None:
    model = build("lightgcn", split)
    users, items = model.tables()
    (users.sum() + (items**2).sum()).backward()
    sparse_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    dense = model.adjacency().to_dense()
    x = torch.cat([model.users.weight, model.items.weight])
    total, cur = x, x
    for _ in range(model.cfg.n_layers):
        cur = dense @ cur
        total = total + cur
    total = total / (model.cfg.n_layers + 1)
    n_u = model.n_users + 1
    (total[:n_u].sum() + (total[n_u:] ** 2).sum()).backward()
    for g, p in zip(sparse_grads, model.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad)


def test_lightgcn_history_states_on_the_training_history_equal_represent(split: SplitData) -> None:
    model = build("lightgcn", split)
    users = np.flatnonzero(split.train.lengths() > 0)
    seqs = input_sequences(split.train, users, int(split.train.lengths().max()))
    with torch.no_grad():
        states, mask = model.history_states(torch.from_numpy(users), seqs)
        want = model.represent(torch.from_numpy(users), seqs)
    torch.testing.assert_close(states[:, -1], want)
    assert torch.equal(mask, seqs > 0)


def test_lightgcn_history_state_at_a_prefix_is_the_ego_plus_the_prefix_items_normalised_sum() -> None:
    # one layer: the user's vector is (e_u + sum over its items of e_i / sqrt(t * deg_i)) / 2
    edges = (torch.tensor([1, 1, 2, 2]), torch.tensor([1, 2, 2, 3]))
    model = LightGCN(LightGCNConfig(dim=3, n_layers=1), 2, 3, edges)
    deg = {1: 1, 2: 2, 3: 1}
    seqs = torch.tensor([[0, 3, 2, 1]])  # user 1 as if it had consumed 3, 2, 1 in that order
    with torch.no_grad():
        states, mask = model.history_states(torch.tensor([1]), seqs)
        e_u, e_i = model.users.weight[1], model.items.weight
        for t in (1, 2, 3):
            prefix = seqs[0, 1 : 1 + t].tolist()
            want = (e_u + sum(e_i[i] / np.sqrt(t * deg[i]) for i in prefix)) / 2
            torch.testing.assert_close(states[0, t], want)
    assert mask.tolist() == [[False, True, True, True]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_models_run_unchanged_on_cuda(name: str, split: SplitData) -> None:
    model = build(name, split).cuda()
    tensors = model.training_tensors(split)
    gen = torch.Generator().manual_seed(0)
    loss = model.loss(tuple(t[:8].cuda() for t in tensors), gen)
    loss.backward()
    seqs = input_sequences(split.train, np.arange(1, 5), 10).cuda()
    assert model.score(model.represent(torch.arange(1, 5).cuda(), seqs)).is_cuda
