"""`recsae report --run DIR`."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsae.cli import main


def test_report_command_writes_the_page(fake_run, capsys):
    run = fake_run()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--run", str(run)])
    assert exit_info.value.code in (0, None)
    assert (run / "report" / "index.html").is_file()
    assert "report written to" in capsys.readouterr().out


def test_report_command_on_a_missing_folder_exits_2(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--run", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert "run folder not found" in capsys.readouterr().err


def test_report_out_at_an_existing_folder_exits_2_and_writes_nothing(fake_run, tmp_path: Path, capsys):
    run = fake_run()
    folder = tmp_path / "pages"
    folder.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--run", str(run), "--out", str(folder)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {folder}: is a folder; --out takes the HTML file to write, e.g. report.html\n"
    assert list(folder.iterdir()) == [] and not (run / "report").exists()


def test_report_whose_default_folder_cannot_be_made_exits_2_before_rendering(fake_run, capsys, monkeypatch):
    run = fake_run()
    (run / "report").write_text("a file where the report folder goes")
    monkeypatch.setattr("recsae.report.write_report", lambda *a: pytest.fail("rendered before the folder was checked"))
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--run", str(run)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {run / 'report'}: exists and is not a folder\n"
