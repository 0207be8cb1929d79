"""The CLI entry point: errors of the operating system naming a file print one line, exit 2."""

from __future__ import annotations

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
