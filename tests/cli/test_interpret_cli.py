"""`recsae interpret --run DIR`: a missing run folder is named as such."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsae.cli import main


def test_interpret_on_a_missing_run_folder_says_the_folder_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["interpret", "--run", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'missing'}: run folder not found (expected the --out folder of `recsae run`)\n"
    )
