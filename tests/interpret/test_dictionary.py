from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsae.interpret.dictionary import (
    FitConfig,
    fit_rules,
    member,
    neuron_states,
    rule_counts,
    sae_states,
)


def _random_case(seed: int = 0, rows: int = 300, m: int = 7, f: int = 11):
    rng = np.random.default_rng(seed)
    feats = sp.csr_matrix((rng.random((rows, f)) < 0.25).astype(np.float32))
    target = sp.csr_matrix((rng.random((rows, m)) < 0.15).astype(np.float32))
    return feats, target


def test_single_f1_rules_equal_a_naive_loop_over_latents_and_features() -> None:
    feats, target = _random_case()
    x, t = feats.toarray() > 0, target.toarray() > 0
    rules = fit_rules(feats, target, FitConfig(max_terms=1, min_support=1, select="f1"))
    stats = rules.stats()
    for j in range(t.shape[1]):
        f1 = [2 * (x[:, f] & t[:, j]).sum() / (x[:, f].sum() + t[:, j].sum()) for f in range(x.shape[1])]
        best = int(np.argmax(f1))
        assert rules.feature_a[j] == best
        assert stats["f1"][j] == np.float64(f1[best])
        assert rules.support[j] == x[:, best].sum()
        assert rules.tp[j] == (x[:, best] & t[:, j]).sum()
        prec = (x[:, best] & t[:, j]).sum() / x[:, best].sum()
        assert np.isclose(stats["lift"][j], prec / t[:, j].mean())


def test_single_youden_rules_count_false_positives_only_outside_the_engaged_rows() -> None:
    feats, target = _random_case(seed=3)
    rng = np.random.default_rng(4)
    x, t = feats.toarray() > 0, target.toarray() > 0
    e = t | (rng.random(t.shape) < 0.2)  # engaged: the target plus weaker firing rows
    rules = fit_rules(feats, target, FitConfig(max_terms=1, min_support=1), engaged=sp.csr_matrix(e.astype(np.float32)))
    for j in range(t.shape[1]):
        youden = [(x[:, f] & t[:, j]).sum() / t[:, j].sum() - (x[:, f] & ~e[:, j]).sum() / (~e[:, j]).sum()
                  for f in range(x.shape[1])]
        assert rules.feature_a[j] == int(np.argmax(youden))


def test_youden_prefers_the_broad_rule_that_covers_the_firing_rows_and_f1_the_narrow_precise_one() -> None:
    rows = np.arange(1000)
    fires = rows < 20
    narrow = rows < 8  # precise, misses most firing rows
    broad = rows < 60  # catches every firing row, 40 false positives out of 980
    feats = sp.csr_matrix(np.stack([narrow, broad], axis=1).astype(np.float32))
    target = sp.csr_matrix(fires[:, None].astype(np.float32))
    assert fit_rules(feats, target, FitConfig(max_terms=1, select="youden")).feature_a[0] == 1
    assert fit_rules(feats, target, FitConfig(max_terms=1, select="f1")).feature_a[0] == 0


def test_rule_counts_of_or_and_rules_equal_a_naive_loop() -> None:
    feats, target = _random_case(seed=1)
    x, t = feats.toarray() > 0, target.toarray() > 0
    m = t.shape[1]
    fa = np.array([0, 1, 2, 3, 4, -1, 5])
    fb = np.array([-1, 2, 3, 9, 8, -1, 10])
    op = np.array([0, 1, 2, 1, 2, 0, 2])
    tp, support = rule_counts(feats, target, fa, fb, op)
    for j in range(m):
        if fa[j] < 0:
            holds = np.zeros(len(x), dtype=bool)
        elif op[j] == 0:
            holds = x[:, fa[j]]
        elif op[j] == 1:
            holds = x[:, fa[j]] | x[:, fb[j]]
        else:
            holds = x[:, fa[j]] & x[:, fb[j]]
        assert tp[j] == (holds & t[:, j]).sum()
        if fa[j] >= 0:
            assert support[j] == holds.sum()


def test_two_term_rule_is_found_when_the_latent_is_an_or_of_two_features() -> None:
    rng = np.random.default_rng(2)
    x = rng.random((2000, 6)) < 0.15
    t = (x[:, 1] | x[:, 4])[:, None]
    rules = fit_rules(sp.csr_matrix(x.astype(np.float32)), sp.csr_matrix(t.astype(np.float32)))
    assert rules.op[0] == 1 and {int(rules.feature_a[0]), int(rules.feature_b[0])} == {1, 4}
    assert rules.stats()["f1"][0] == 1.0


def test_member_looks_up_single_entries() -> None:
    feats = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 1]], dtype=np.float32))
    hit = member(feats, np.array([0, 0, 1, 1, 1]), np.array([0, 1, 0, 1, -1]))
    assert hit.tolist() == [False, True, True, False, False]


def test_sae_band_is_at_or_above_the_median_of_non_zero_fit_activations() -> None:
    acts = sp.csr_matrix(np.array([[1.0, 0], [2.0, 0], [3.0, 0], [4.0, 0], [10.0, 0]], dtype=np.float32))
    s = sae_states(acts, fit_rows=np.array([0, 1, 2, 3]))
    assert s.band_threshold[0] == 2.0  # lower median of 1, 2, 3, 4
    assert np.isinf(s.band_threshold[1])  # dead latent
    assert s.band.toarray()[:, 0].tolist() == [0, 1, 1, 1, 1]
    assert s.active.toarray()[:, 0].tolist() == [1, 1, 1, 1, 1]


def test_neuron_states_parallel_the_sae_definition_on_the_top_decile() -> None:
    acts = np.arange(100, dtype=np.float32)[:, None]
    s = neuron_states(acts, np.arange(100))
    assert np.flatnonzero(s.active.toarray().ravel()).tolist() == list(range(90, 100))  # >= 89.1
    assert np.flatnonzero(s.band.toarray().ravel()).tolist() == list(range(94, 100))  # lower median of 90..99
    assert s.engaged is s.active  # inactive = not in the top decile
    gap = neuron_states(acts, np.arange(100), inactive_quantile=0.5)
    assert gap.engaged.toarray().ravel().sum() == 50  # >= median 49.5


def test_two_ranks_each_count_a_part_of_the_rows_and_both_fit_one_process_s_rules(monkeypatch) -> None:
    # two ranks as two threads; their all_reduce sums what each passes in, at a barrier
    import threading

    import torch

    from recsae import distributed
    from recsae.distributed import World

    feats, target = _random_case(seed=3, rows=401)
    cfg = FitConfig(max_terms=2, min_support=1)
    alone = fit_rules(feats, target, cfg)
    barrier, slots = threading.Barrier(2, timeout=60), [np.zeros(0), np.zeros(0)]
    passed: dict[int, list[np.ndarray]] = {0: [], 1: []}

    def all_reduce(world: World, x: np.ndarray, op: str = "sum", what: str = "") -> np.ndarray:
        slots[world.rank] = np.array(x, dtype=np.float64)
        passed[world.rank].append(slots[world.rank])
        barrier.wait()
        total = slots[0] + slots[1]
        barrier.wait()  # both have read the slots before either writes the next ones
        return total

    monkeypatch.setattr(distributed, "all_reduce", all_reduce)
    ranks: list[object] = [None, None]

    def rank(r: int) -> None:
        ranks[r] = fit_rules(feats, target, cfg, world=World(r, 2, r, torch.device("cpu")))

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in ranks:
        assert got is not None and got.n_rows == alone.n_rows
        for name in ("feature_a", "feature_b", "op", "support", "n_target", "tp"):
            assert np.array_equal(getattr(got, name), getattr(alone, name)), name
    # the first reduction carries each rank's row count: each counted a proper part, together all
    counted = [int(passed[r][0][0]) for r in (0, 1)]
    assert sum(counted) == feats.shape[0] and all(0 < c < feats.shape[0] for c in counted)
    assert len(passed[0]) == len(passed[1]) > 1  # the counts themselves were summed too
