"""recsae.io: damaged JSON and safetensors files are DataErrors naming the file; format versions."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from recsae.errors import DataError
from recsae.io import (
    FORMAT_VERSION,
    check_format_version,
    check_writable_folder,
    json_text,
    make_temp_dir,
    read_json,
    read_tensors,
    remove_stale_partials,
    write_json,
    write_tensors,
)


def test_json_round_trip_returns_the_object(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", {"x": [1, 2], "p": tmp_path})
    assert read_json(tmp_path / "a.json") == {"x": [1, 2], "p": str(tmp_path)}


def test_corrupt_json_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{\n  "x": oops\n}')
    with pytest.raises(DataError, match=r"a\.json, line 2: not valid JSON") as err:
        read_json(tmp_path / "a.json")
    assert err.value.line == 2


@pytest.mark.parametrize(("content", "message"), [("[1, 2]", "expected a JSON object, found list"),
                                                  (b"\xff\xfe{}", "cannot read")])
def test_json_that_is_not_an_object_or_not_text_is_a_data_error(tmp_path: Path, content: str | bytes, message: str) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError, match=message) as err:
        read_json(path)
    assert err.value.path == str(path)


def test_missing_json_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.json: cannot read") as err:
        read_json(tmp_path / "nope.json")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing"])
def test_damaged_safetensors_are_a_data_error_naming_the_file(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "w.safetensors"
    write_tensors(path, {"w": torch.arange(100.0)})
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a safetensors file")
    else:
        path.unlink()
    with pytest.raises(DataError, match=r"w\.safetensors: .*expected a safetensors file|w\.safetensors: not a readable"):
        read_tensors(path)


def test_intact_safetensors_read_back_equal(tmp_path: Path) -> None:
    write_tensors(tmp_path / "w.safetensors", {"w": torch.arange(5.0)})
    assert torch.equal(read_tensors(tmp_path / "w.safetensors")["w"], torch.arange(5.0))


@pytest.mark.parametrize("found", [99, None, "1"])
def test_other_format_versions_name_found_and_supported_version_and_file(found: object) -> None:
    with pytest.raises(DataError) as err:
        check_format_version({"format_version": found}, "run/config.json")
    msg = str(err.value)
    assert msg.startswith("run/config.json, field 'format_version'")
    assert f"format version {found!r}" in msg and f"reads format version {FORMAT_VERSION}" in msg


def test_the_current_format_version_passes() -> None:
    check_format_version({"format_version": FORMAT_VERSION}, "x.json")


def _no_constants(name: str) -> None:
    raise AssertionError(f"non-standard JSON literal {name} written")


def test_written_json_is_strict_with_non_finite_numbers_as_null(tmp_path: Path) -> None:
    write_json(tmp_path / "a.json", {"a": float("nan"), "b": [np.float32("inf")], "c": np.array([1.0, np.nan]),
                                     "d": torch.tensor([-np.inf, 2.0]), "e": np.float64(0.5), "f": (np.int64(3), True)})
    text = (tmp_path / "a.json").read_text()
    assert json.loads(text, parse_constant=_no_constants) == {
        "a": None, "b": [None], "c": [1.0, None], "d": [None, 2.0], "e": 0.5, "f": [3, True]
    }


def test_json_text_is_strict_json_on_one_line_without_indent() -> None:
    text = json_text({"x": [np.nan, 1]}, indent=None)
    assert "\n" not in text and json.loads(text, parse_constant=_no_constants) == {"x": [None, 1]}


def test_an_unserialisable_value_leaves_no_file_behind(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        write_json(tmp_path / "a.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_and_temp_folders_follow_the_umask(tmp_path: Path, umask_022: None) -> None:
    write_json(tmp_path / "a.json", {"x": 1})
    write_tensors(tmp_path / "w.safetensors", {"w": torch.zeros(2)})
    folder = make_temp_dir(tmp_path, ".store.partial-")
    assert (_mode(tmp_path / "a.json"), _mode(tmp_path / "w.safetensors"), _mode(folder)) == (0o644, 0o644, 0o755)
    os.umask(0o077)
    write_json(tmp_path / "a.json", {"x": 2})  # replaced by a new file: the mode follows the umask now
    assert (_mode(tmp_path / "a.json"), _mode(make_temp_dir(tmp_path, "x"))) == (0o600, 0o700)


def test_remove_stale_partials_deletes_only_temporaries_recsae_leaves(tmp_path: Path) -> None:
    debris = [".summary.json.k3_9x0qa.tmp", ".activations.partial-ab12cd34/", ".activations.old-ab12cd34/",
              "sae/.cfg.json.0a1b2c3d.tmp", "sae/train_state/.state.json.zz99aa00.tmp", "model/.model.safetensors.abcdefgh.tmp"]
    kept = ["summary.json", "sae/cfg.json", "notes.tmp", ".editor.tmp", ".config/.a.json.ab12cd34.tmp",
            "sae/train_state/state.json", "a/b/c/.deep.json.ab12cd34.tmp", ".x.partial-toolong123"]
    for name in debris + kept:
        path = tmp_path / name.rstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            path.mkdir()
            (path / "shard-00000.npy").write_bytes(b"x")
        else:
            path.write_text(f"content of {name}")
    removed = remove_stale_partials(tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in removed) == sorted(d.rstrip("/") for d in debris)
    assert not any((tmp_path / d.rstrip("/")).exists() for d in debris)
    assert all((tmp_path / k).read_text() == f"content of {k}" for k in kept)


def test_remove_stale_partials_of_one_target_and_of_a_missing_folder(tmp_path: Path) -> None:
    (tmp_path / ".s.partial-ab12cd34").mkdir()
    (tmp_path / ".t.partial-ab12cd34").mkdir()
    assert remove_stale_partials(tmp_path, depth=0, target="s") == [tmp_path / ".s.partial-ab12cd34"]
    assert [p.name for p in tmp_path.iterdir()] == [".t.partial-ab12cd34"]
    assert remove_stale_partials(tmp_path / "missing") == []
    assert not (tmp_path / "missing").exists()


def test_check_writable_folder_names_the_place_that_blocks_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_writable_folder(tmp_path / "new" / "run")  # can be made: fine, and nothing is made
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "f").touch()
    with pytest.raises(DataError, match=r"f: exists and is not a folder \(so .*f/run cannot be made\)$"):
        check_writable_folder(tmp_path / "f" / "run")
    # what a read-only folder looks like to a user who is not root
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(DataError, match="permission denied") as err:
        check_writable_folder(tmp_path / "new" / "run")
    assert err.value.path == str(tmp_path)
