"""ActivationStore: round trip across shards, memory-mapped reading, and clear errors for
missing, partial, corrupt or newer stores."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest

from recsae.errors import DataError
from recsae.io import remove_stale_partials
from recsae.probe import ActivationStore, StoreWriter
from recsae.probe import store as store_mod
from recsae.probe.store import merge_stores, part_dir


def _write(path, x, shard_rows=None, chunks=(3, 5, 9)):
    n = len(x)
    split = np.arange(n) % 3
    with StoreWriter(path, x.shape[1], {"mode": "model"}, shard_rows=shard_rows) as w:
        lo = 0
        for size in chunks:
            hi = min(lo + size, n)
            w.append(x[lo:hi], np.arange(lo, hi) + 1, np.ones(hi - lo), split[lo:hi], np.zeros(hi - lo), np.zeros(hi - lo))
            lo = hi
        return w.finish()


@pytest.fixture
def x():
    return np.random.default_rng(0).standard_normal((17, 5)).astype(np.float32)


def test_round_trip_across_shards(x, tmp_path):
    store = _write(tmp_path / "s", x, shard_rows=4)
    assert len(store.shards) == 5 and store.n_rows == 17 and store.d == 5
    reopened = ActivationStore.open(tmp_path / "s")
    np.testing.assert_array_equal(reopened.load(), x)
    rows = np.array([16, 0, 5, 4, 3, 11])
    np.testing.assert_array_equal(reopened.load(rows), x[rows])
    np.testing.assert_array_equal(np.concatenate(list(reopened.iter_batches(3))), x)
    np.testing.assert_array_equal(np.concatenate(list(reopened.iter_batches(4, rows))), x[rows])
    assert [len(b) for b in reopened.iter_batches(6)] == [6, 6, 5]
    assert list(reopened.rows("valid")) == list(range(1, 17, 3))
    assert list(reopened.index.user) == list(range(1, 18))


def test_single_shard_store_loads_as_a_read_only_memory_map(x, tmp_path):
    store = _write(tmp_path / "s", x)
    arr = store.load()
    assert isinstance(arr, np.memmap) and not arr.flags.writeable
    np.testing.assert_array_equal(arr, x)


def test_failed_write_leaves_nothing_and_keeps_the_old_store(x, tmp_path):
    _write(tmp_path / "s", x)
    with pytest.raises(RuntimeError), StoreWriter(tmp_path / "s", 5, {}, shard_rows=2) as w:
        w.append(x[:7], np.ones(7), np.ones(7), np.zeros(7), np.zeros(7), np.zeros(7))
        raise RuntimeError("killed")
    np.testing.assert_array_equal(ActivationStore.open(tmp_path / "s").load(), x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_rewrite_replaces_the_old_store(x, tmp_path):
    _write(tmp_path / "s", x)
    _write(tmp_path / "s", x[:4], chunks=(4,))
    assert ActivationStore.open(tmp_path / "s").n_rows == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_missing_store_and_partial_store_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="folder missing"):
        ActivationStore.open(tmp_path / "nope")
    (tmp_path / "partial").mkdir()
    np.save(tmp_path / "partial" / "shard-00000.npy", np.zeros((2, 2), np.float32))
    with pytest.raises(DataError, match=r"meta\.json is missing"):
        ActivationStore.open(tmp_path / "partial")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda meta: {**meta, "format_version": 99}, "format version 99"),
        (lambda meta: {**meta, "dtype": "float16"}, "dtype"),
        (lambda meta: {**meta, "n_rows": 3}, "meta says 3"),
        (lambda meta: {k: v for k, v in meta.items() if k != "d"}, "'d'"),
    ],
)
def test_inconsistent_meta_is_a_data_error(x, tmp_path, change, message):
    _write(tmp_path / "s", x)
    meta_path = tmp_path / "s" / "meta.json"
    meta_path.write_text(json.dumps(change(json.loads(meta_path.read_text()))))
    with pytest.raises(DataError, match=message):
        ActivationStore.open(tmp_path / "s")


def test_corrupt_files_are_data_errors_naming_the_file(x, tmp_path):
    _write(tmp_path / "s", x)
    (tmp_path / "s" / "meta.json").write_text("{not json")
    with pytest.raises(DataError, match=r"meta\.json"):
        ActivationStore.open(tmp_path / "s")

    _write(tmp_path / "s", x)
    shard = tmp_path / "s" / "shard-00000.npy"
    shard.write_bytes(shard.read_bytes()[:-20])
    with pytest.raises(DataError, match=r"shard-00000\.npy"):
        ActivationStore.open(tmp_path / "s")

    _write(tmp_path / "s", x)
    (tmp_path / "s" / "index.parquet").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"index\.parquet"):
        ActivationStore.open(tmp_path / "s")


def test_shard_with_wrong_width_is_a_data_error(x, tmp_path):
    _write(tmp_path / "s", x)
    np.save(tmp_path / "s" / "shard-00000.npy", np.zeros((17, 4), np.float32))
    with pytest.raises(DataError, match=r"expected float32 \(17, 5\)"):
        ActivationStore.open(tmp_path / "s")


def test_a_published_store_follows_the_umask(tmp_path, umask_022) -> None:
    store = _write(tmp_path / "s", np.ones((10, 4), dtype=np.float32))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o755
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in store.path.iterdir()} == {
        "meta.json": 0o644, "index.parquet": 0o644, "shard-00000.npy": 0o644
    }


def test_a_new_store_removes_partial_folders_a_killed_writer_left(tmp_path) -> None:
    for name in (".s.partial-ab12cd34", ".s.old-ab12cd34", ".other.partial-ab12cd34"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "shard-00000.npy").write_bytes(b"x")
    _write(tmp_path / "s", np.ones((10, 4), dtype=np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.partial-ab12cd34", "s"]


def test_an_empty_shard_file_is_a_data_error_naming_it(x, tmp_path):
    _write(tmp_path / "s", x)
    (tmp_path / "s" / "shard-00000.npy").write_bytes(b"")
    with pytest.raises(DataError, match=r"shard-00000\.npy: unreadable shard"):
        ActivationStore.open(tmp_path / "s")


@pytest.mark.parametrize(("key", "value"), [("d", None), ("n_rows", "17"), ("n_rows", -1), ("shards", None)])
def test_a_meta_value_of_the_wrong_type_is_a_data_error_naming_the_field(x, tmp_path, key, value):
    _write(tmp_path / "s", x)
    meta_path = tmp_path / "s" / "meta.json"
    meta_path.write_text(json.dumps(json.loads(meta_path.read_text()) | {key: value}))
    with pytest.raises(DataError, match=f"field '{key}': expected"):
        ActivationStore.open(tmp_path / "s")


def test_merged_parts_read_exactly_as_the_store_written_at_once_and_the_parts_go(x, tmp_path):
    whole = _write(tmp_path / "whole", x, shard_rows=4)
    # the rows 0-6, 7-16 written as two parts (as two ranks would), with their own shard sizes
    parts = [part_dir(tmp_path / "merged", r) for r in range(2)]
    for part, (lo, hi) in zip(parts, [(0, 7), (7, 17)], strict=True):
        with StoreWriter(part, 5, {"mode": "model"}, shard_rows=3) as w:
            w.append(x[lo:hi], np.arange(lo, hi) + 1, np.ones(hi - lo), np.arange(lo, hi) % 3, np.zeros(hi - lo),
                     np.zeros(hi - lo))
            w.finish()
    merged = merge_stores(parts, tmp_path / "merged")
    assert merged.load().tobytes() == whole.load().tobytes()
    assert merged.index.equals(whole.index)
    assert {k: v for k, v in merged.meta.items() if k != "shards"} == {k: v for k, v in whole.meta.items()
                                                                       if k != "shards"}
    assert [s["rows"] for s in merged.meta["shards"]] == [3, 3, 1, 3, 3, 3, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged", "whole"]


def test_a_part_left_by_a_killed_distributed_harvest_counts_as_a_stale_partial(x, tmp_path):
    with StoreWriter(part_dir(tmp_path / "s", 1), 5, {}) as w:
        w.finish()
    assert remove_stale_partials(tmp_path, target="s") == [part_dir(tmp_path / "s", 1)]


def test_a_view_reads_the_rows_asked_for_in_their_order_across_shards(x, tmp_path):
    store = _write(tmp_path / "s", x, shard_rows=4)
    rows = np.array([16, 0, 5, 4, 3, 11, 12])
    view = store.view(rows)
    assert view.shape == (7, 5) and len(view) == 7
    np.testing.assert_array_equal(np.asarray(view), x[rows])
    np.testing.assert_array_equal(view[np.array([6, 0, 0, 2])], x[rows[[6, 0, 0, 2]]])
    np.testing.assert_array_equal(np.asarray(view[2:6]), x[rows[2:6]])
    whole = store.view()
    np.testing.assert_array_equal(np.asarray(whole[3:14]), x[3:14])  # consecutive rows across shards
    np.testing.assert_array_equal(np.asarray(whole[::5]), x[::5])
    np.testing.assert_array_equal(np.concatenate(list(whole.iter_batches(6))), x)


def test_a_view_mean_is_bit_for_bit_the_in_memory_float64_mean(tmp_path):
    x = (np.random.default_rng(1).standard_normal((1000, 7)) * 3 + 20).astype(np.float32)
    store = _write(tmp_path / "s", x, shard_rows=64, chunks=(400, 600))
    rows = np.flatnonzero(np.arange(1000) % 3 != 1)
    assert np.array_equal(store.view(rows).mean(batch_size=37), x[rows].mean(0, dtype=np.float64))
    assert np.array_equal(store.view().mean(), x.mean(0, dtype=np.float64))


def _rss_file_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssFile in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc")
def test_reading_through_a_view_hands_the_mapped_pages_back(tmp_path, monkeypatch):
    x = np.random.default_rng(2).standard_normal((65536, 128)).astype(np.float32)  # 32 MB
    store = _write(tmp_path / "s", x, chunks=(65536,))
    before = _rss_file_mb()
    assert float(np.asarray(store.shards[0]).sum()) == pytest.approx(float(x.sum(dtype=np.float64)), rel=1e-3)
    assert _rss_file_mb() - before > 24  # reading a memory map makes its pages resident here
    monkeypatch.setattr(store_mod, "RELEASE_BYTES", 8 * 2**20)
    touched = _rss_file_mb()
    for batch in store.view().iter_batches(4096):  # past RELEASE_BYTES the pages are released
        assert batch.shape == (4096, 128)
    assert _rss_file_mb() < touched - 16


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc")
def test_scattered_reads_count_the_pages_they_touch(tmp_path, monkeypatch):
    """A batch of random rows makes most of the store resident (the kernel maps the pages around
    each one): it counts towards RELEASE_BYTES as such, not by its own size."""
    x = np.random.default_rng(3).standard_normal((131072, 64)).astype(np.float32)  # 32 MB
    store = _write(tmp_path / "s", x, chunks=(131072,))
    monkeypatch.setattr(store_mod, "RELEASE_BYTES", 8 * 2**20)
    view = store.view()
    rng = np.random.default_rng(0)
    before = _rss_file_mb()
    grown = []
    for _ in range(10):  # 1 MB of rows per batch, spread over the whole store
        rows = rng.choice(len(x), size=4096, replace=False)
        np.testing.assert_array_equal(view[rows], x[rows])
        grown.append(_rss_file_mb() - before)
    assert max(grown) < 4
