"""Filters (rating threshold, k-core) and splits (leave-one-out, random, time, given) on closed-form cases."""

from __future__ import annotations

import numpy as np
import pytest

from recsae.data import filters
from recsae.data.dataset import InteractionDataset, ItemMeta
from recsae.data.split import (
    given_split,
    global_time_split,
    leave_one_out,
    make_split,
    random_split,
    time_split,
)
from recsae.errors import ConfigError, DataError


def test_min_rating_keeps_positives_and_reindexes_with_aligned_metadata(tiny):
    ds = tiny([1, 1, 2, 2, 3], [1, 2, 2, 3, 1], rating=[5, 3, 4, 4, 1])
    out = filters.min_rating(ds, 4)
    # user 3 has only a 1-star rating and disappears; every item keeps a positive.
    assert out.n_interactions == 3
    assert out.user_ids.tolist() == ["", "u1", "u2"]
    assert out.item_ids.tolist() == ["", "i1", "i2", "i3"]
    assert out.rating.tolist() == [5, 4, 4]
    assert out.info["filters"] == ["rating>=4"]
    assert out.info["counts"]["rating>=4"] == {"interactions": 3, "users": 2, "items": 3}


def test_dropped_item_takes_its_metadata_row_with_it(tiny):
    ds = tiny([1, 1, 2], [1, 2, 3], rating=[5, 1, 5])
    out = filters.min_rating(ds, 4)
    assert out.item_ids.tolist() == ["", "i1", "i3"]
    assert out.item_meta.title == ["", "item 1", "item 3"]
    assert out.item_meta.multi["genre"] == [(), ("g1",), ("g1",)]
    assert out.item_meta.numeric["year"].tolist() == [0, 1, 3]
    assert out.item.tolist() == [1, 2]


def test_k_core_iterates_until_every_user_and_item_has_k():
    # Users 1,2 each rate items 1,2; user 3 rates items 1,3. Item 3 has 1 interaction ->
    # dropped, then user 3 has 1 -> dropped, then item 1 has 2: a 2-core of users 1,2 x items 1,2.
    user = np.array([1, 1, 2, 2, 3, 3])
    item = np.array([1, 2, 1, 2, 1, 3])
    ds = InteractionDataset(
        "k", user, item, np.arange(6.0), np.array(["", "a", "b", "c"]), np.array(["", "x", "y", "z"]),
        ItemMeta(title=["", "x", "y", "z"]),
    )
    out = filters.k_core(ds, 2)
    assert out.user_ids.tolist() == ["", "a", "b"]
    assert out.item_ids.tolist() == ["", "x", "y"]
    assert out.n_interactions == 4
    counts_u = np.bincount(out.user)[1:]
    counts_i = np.bincount(out.item)[1:]
    assert counts_u.min() >= 2 and counts_i.min() >= 2


def test_k_core_of_one_is_a_no_op(tiny):
    ds = tiny([1, 2], [1, 2])
    assert filters.k_core(ds, 1) is ds


def test_rating_threshold_needs_ratings(tiny):
    with pytest.raises(ConfigError, match="no ratings"):
        filters.min_rating(tiny([1], [1]), 4)


def test_filter_leaving_nothing_is_a_data_error(tiny):
    with pytest.raises(DataError, match="no interactions left after rating>=5"):
        filters.min_rating(tiny([1, 2], [1, 2], rating=[1, 2]), 5)


def test_rows_stay_sorted_by_user_then_time_after_filters(tiny):
    ds = tiny([1, 1, 1, 2, 2, 2], [1, 2, 3, 1, 2, 3], time=[1, 2, 2, 0, 5, 9], rating=[5] * 6)
    out = filters.k_core(filters.min_rating(ds, 4), 2)
    key = out.user * 100 + out.time
    assert np.all(np.diff(key) >= 0)


def test_leave_one_out_holds_out_last_two_and_keeps_short_users_in_train(tiny):
    # user 1: items 1,2,3,4; user 2: items 2,3 (fewer than 3 -> train only)
    ds = tiny([1, 1, 1, 1, 2, 2], [1, 2, 3, 4, 2, 3])
    split = leave_one_out(ds)
    assert split.train[1].tolist() == [1, 2]
    assert split.valid[1].tolist() == [3]
    assert split.test[1].tolist() == [4]
    assert split.train[2].tolist() == [2, 3]
    assert len(split.valid[2]) == 0 and len(split.test[2]) == 0
    assert split.history("test")[1].tolist() == [1, 2, 3]
    assert split.eval_users("test").tolist() == [1]
    assert split.protocol == "leave-one-out"


def test_time_split_cuts_at_global_time_quantiles(tiny):
    # 10 interactions at times 0..9: the last 10% (t=9) test, the 10% before (t=8) valid.
    ds = tiny([1] * 5 + [2] * 5, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], time=[0, 2, 4, 6, 8, 1, 3, 5, 7, 9])
    split = time_split(ds, valid_frac=0.1, test_frac=0.1)
    assert split.test[2].tolist() == [10] and len(split.test[1]) == 0
    assert split.valid[1].tolist() == [5] and len(split.valid[2]) == 0
    assert split.train[1].tolist() == [1, 2, 3, 4]
    assert split.train.values.size + split.valid.values.size + split.test.values.size == 10


def test_time_split_rejects_impossible_fractions(tiny):
    with pytest.raises(ConfigError):
        time_split(tiny([1], [1]), valid_frac=0.6, test_frac=0.5)


def test_given_split_reproduces_row_labels_and_auto_prefers_it(tiny):
    ds = tiny([1, 1, 1, 2, 2], [1, 2, 3, 1, 3])
    ds.row_split = np.array([0, 1, 2, 0, 2], dtype=np.int8)
    split = given_split(ds)
    assert split.train[1].tolist() == [1] and split.valid[1].tolist() == [2] and split.test[1].tolist() == [3]
    assert split.test[2].tolist() == [3] and len(split.valid[2]) == 0
    assert make_split(ds).protocol == "given"
    assert make_split(ds, "leave-one-out").protocol == "leave-one-out"


def test_given_split_without_labels_is_an_error(tiny):
    with pytest.raises(DataError, match="no given split"):
        given_split(tiny([1], [1]))


def _untimed(tiny, n_users: int = 40, length: int = 8) -> InteractionDataset:
    """Users whose items are listed in increasing order, as a play-count table would be, without time."""
    ds = tiny([u for u in range(1, n_users + 1) for _ in range(length)],
              [1 + (u + t) % 30 for u in range(n_users) for t in range(length)])
    ds.info["has_time"] = False
    return ds


def test_leave_one_out_without_timestamps_holds_out_seeded_random_items_not_the_file_order_last(tiny, caplog):
    ds = _untimed(tiny)
    with caplog.at_level("WARNING", logger="recsae"):
        split = leave_one_out(ds, seed=1)
    assert "no timestamps" in caplog.text
    assert split.protocol == "leave-one-out (random order: no timestamps)"
    assert "no timestamps" in split.info["warning"]
    last = [ds.item[ds.user == u][-1] for u in range(1, 41)]
    tests = [split.test[u][0] for u in range(1, 41)]
    assert sum(t == x for t, x in zip(tests, last, strict=True)) < 20  # 1 in 8 by chance, 40 of 40 in file order
    for u in range(1, 41):  # every item lands in exactly one part; train keeps the file order
        parts = [*split.train[u], *split.valid[u], *split.test[u]]
        assert sorted(parts) == sorted(ds.item[ds.user == u].tolist())
        assert split.train[u].tolist() == [i for i in ds.item[ds.user == u] if i not in (*split.valid[u], *split.test[u])]
    assert leave_one_out(ds, seed=1).test.values.tolist() == split.test.values.tolist()
    assert leave_one_out(ds, seed=2).test.values.tolist() != split.test.values.tolist()


def test_random_split_holds_out_one_valid_and_one_test_item_per_user_by_seed(tiny):
    ds = tiny([1] * 6 + [2] * 2, [1, 2, 3, 4, 5, 6, 1, 2])
    split = random_split(ds, seed=0)
    assert split.protocol == "random" and split.info["seed"] == 0
    assert len(split.valid[1]) == 1 and len(split.test[1]) == 1 and len(split.train[1]) == 4
    assert split.valid[1][0] != split.test[1][0]
    assert len(split.test[2]) == 0 and split.train[2].tolist() == [1, 2]  # too short: train only
    draws = {tuple(random_split(ds, seed=s).test[1]) for s in range(20)}
    assert len(draws) > 2  # not always the same (last) item


def test_auto_holds_out_at_random_only_for_general_models_on_untimed_data(tiny):
    untimed = _untimed(tiny)
    assert make_split(untimed, sequential=False).protocol == "random"
    assert make_split(untimed, sequential=True).protocol.startswith("leave-one-out (random order")
    timed = tiny([1, 1, 1, 2, 2, 2], [1, 2, 3, 3, 2, 1])
    assert make_split(timed, sequential=False).protocol == "leave-one-out"


def test_time_split_without_timestamps_is_refused(tiny):
    with pytest.raises(ConfigError, match="no timestamps"):
        time_split(_untimed(tiny))


def test_split_without_test_users_is_an_error_and_users_without_targets_are_counted(tiny):
    with pytest.raises(DataError, match=r"gives no valid interactions.*at least 3 interactions"):
        make_split(tiny([1, 1, 2, 2], [1, 2, 1, 2]))  # every user is too short for leave-one-out
    split = make_split(tiny([1, 1, 1, 2, 2], [1, 2, 3, 1, 2]))
    assert split.info["test_users"] == 1 and split.info["users_without_test"] == 1


def test_given_split_without_a_part_names_the_missing_file(tiny):
    ds = tiny([1, 1, 1, 2, 2, 2], [1, 2, 3, 1, 2, 3])  # two users: a single-user dataset is refused anyway
    ds.row_split = np.array([0, 0, 2, 0, 0, 2], dtype=np.int8)
    ds.info["missing_files"] = ["/data/rc/dev.csv"]
    with pytest.raises(DataError, match=r"no validation part \(missing /data/rc/dev\.csv\)"):
        make_split(ds)
    assert make_split(ds, "leave-one-out").valid[1].tolist() == [2]


def test_a_single_user_dataset_is_refused(tiny):
    with pytest.raises(DataError, match="has a single user; recsae needs at least two"):
        make_split(tiny([1] * 6, [1, 2, 3, 4, 5, 6]))


def test_users_with_one_interaction_each_leave_no_validation_targets(tiny):
    with pytest.raises(DataError, match=r"gives no valid interactions .*at least 3 interactions"):
        make_split(tiny([1, 2, 3], [1, 2, 3]))


def test_a_given_split_without_dev_rows_names_the_missing_dev_csv(tmp_path):
    from recsae.data.loaders import rechorus

    (tmp_path / "train.csv").write_text("user_id\titem_id\ttime\n" + "".join(
        f"{u}\t{i}\t{i}\n" for u in (1, 2) for i in (1, 2, 3)))
    ds = rechorus.load(tmp_path)
    with pytest.raises(DataError, match=r"no validation part \(missing \S*dev\.csv.*pass --protocol leave-one-out"):
        make_split(ds)
    assert make_split(ds, "leave-one-out").valid.values.tolist() == [2, 2]


def _at(day: int, hour: float) -> float:
    """Seconds since the epoch of ``hour`` o'clock on day ``day`` of a UTC+8 clock."""
    return day * 86400.0 + (hour - 8) * 3600.0


def test_global_time_split_cuts_by_utc8_day_and_drops_held_out_rows_unknown_to_training(tiny):
    rows = [  # (user, item, time); days 0-10: train up to day int(10 * 0.8) = 8, validation day 9, test day 10
        (1, 1, _at(0, 12)), (1, 5, _at(6, 12)), (1, 2, _at(8, 23.99)), (1, 3, _at(9, 12)), (1, 4, _at(10, 5)),
        (1, 7, _at(10, 6)),  # item 7 has no training row: dropped
        (2, 1, _at(1, 12)), (2, 3, _at(3, 12)), (2, 4, _at(4, 12)),
        (2, 2, _at(9, 2)),  # 18:00 UTC on day 8, but day 9 in UTC+8: validation
        (2, 5, _at(10, 3)),
        (3, 6, _at(10, 12)),  # user 3 has no training row: dropped
    ]
    ds = tiny(*(list(c) for c in zip(*rows, strict=True)))
    split = make_split(ds, "global-time")
    assert split.protocol == "global-time"
    assert split.info | {"test_users": 0, "users_without_test": 0} == {
        "utc_offset_hours": 8.0, "days": 11, "train_last_day": 8, "valid_last_day": 9, "dropped_rows": 2,
        "test_users": 0, "users_without_test": 0}
    ids = split.dataset.item_ids
    assert split.dataset.user_ids.tolist() == ["", "u1", "u2"]
    names = {part: [[ids[i] for i in getattr(split, part)[u]] for u in (1, 2)] for part in ("train", "valid", "test")}
    assert names == {"train": [["i1", "i5", "i2"], ["i1", "i3", "i4"]], "valid": [["i3"], ["i2"]],
                     "test": [["i4"], ["i5"]]}
    # on a UTC clock the same row is on day 8: training
    utc = global_time_split(ds, utc_offset_hours=0)
    assert "i2" in [utc.dataset.item_ids[i] for i in utc.train[2]]


def test_global_time_split_needs_timestamps_and_sane_fractions(tiny):
    untimed = tiny([1, 1, 2, 2], [1, 2, 1, 2])
    untimed.info["has_time"] = False
    with pytest.raises(ConfigError, match="no timestamps"):
        global_time_split(untimed)
    with pytest.raises(ConfigError, match="fractions"):
        global_time_split(tiny([1], [1]), valid_frac=0.5, test_frac=0.5)


def test_global_time_split_reproduces_the_reference_ml_1m_counts(data_root):
    from recsae.data.registry import load_dataset

    split = make_split(load_dataset("ml-1m", data_root=data_root), "global-time")
    # the reference's ML_1MTOPK files: 568,761 / 2,562 / 2,874 rows; 214 and 226 users with held-out rows
    assert (len(split.train.values), len(split.valid.values), len(split.test.values)) == (568_761, 2_562, 2_874)
    assert ((split.valid.lengths() > 0).sum(), (split.test.lengths() > 0).sum()) == (214, 226)
    assert (split.n_users, split.n_items) == (6_032, 3_125)
