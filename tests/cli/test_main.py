"""The CLI entry point: errors of the operating system naming a file print one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recsae.cli import main


def test_an_os_error_naming_a_file_is_one_line_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "cache"
    file.write_text("a file where the cache folder should be")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "fetch", "ml-100k", "--cache-dir", str(file)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {file}: File exists\n"


@pytest.mark.parametrize("args", [["--help"], ["data", "list"], ["run", "--help"]])
def test_help_and_data_list_do_not_import_torch(args: list[str]) -> None:
    # torch takes seconds to import: commands that need no model must start without it
    code = ("import sys\nfrom recsae.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    assert e.code == 0, e.code\nprint(sorted(m for m in ('torch', 'pandas', 'pyarrow', 'scipy') if m in sys.modules),"
            " file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("command", [["run", "--out", "{ro}/run"], ["steer", "--run", "{tmp}/run", "--latent", "0", "--scale",
                                     "0", "--json", "{ro}/steer.json"], ["report", "--run", "{tmp}/run", "--out",
                                     "{ro}/report.html"], ["train", "--out", "{ro}/model"]],
                         ids=["run", "steer --json", "report --out", "train"])
def test_an_output_place_the_user_cannot_write_fails_in_one_line_naming_it_before_any_work(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a read-only folder as a user who is not root sees it (root, as in CI, may write anywhere)
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != ro and real_access(path, mode))
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(ro=ro, tmp=tmp_path) for a in command])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"error: {ro}: permission denied: cannot write into this folder\n"
    assert list(ro.iterdir()) == []
