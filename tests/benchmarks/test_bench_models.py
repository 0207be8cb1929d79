"""bench_models.py: the parser of RecBole's console log (RecBole itself is not installed in CI) and the
checks of a --merge file, which must fail before any data is loaded or model trained."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # as when run as a script: its helpers import from the folder
SPEC = importlib.util.spec_from_file_location("bench_models", BENCHMARKS / "bench_models.py")
assert SPEC is not None and SPEC.loader is not None
bench_models = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench_models)

LOG = (
    "27 Nov 10:00    INFO  \x1b[1;32mepoch 0 training\x1b[0m [\x1b[1;34mtime\x1b[0m: 716.25s, "
    "\x1b[1;34mtrain loss\x1b[0m: 2310.5139]\n"
    "27 Nov 10:01    INFO  \x1b[1;32mepoch 0 evaluating\x1b[0m [\x1b[1;34mtime\x1b[0m: 3.10s, "
    "\x1b[1;34mvalid_score\x1b[0m: 0.021000]\n"
    "27 Nov 10:01    INFO  \x1b[1;34mvalid result\x1b[0m: \nndcg@10 : 0.021    hit@10 : 0.0435\n"
    "27 Nov 10:13    INFO  epoch 1 training [time: 700.00s, train loss: 2101.0000]\n"
    "27 Nov 10:13    INFO  epoch 1 evaluating [time: 2.90s, valid_score: 0.045500]\n"
)


def test_recbole_log_parses_every_epoch_with_colour_codes_stripped() -> None:
    rows = bench_models.parse_recbole_log(LOG)
    assert rows == [
        {"epoch": 0, "train_seconds": 716.25, "train_loss": 2310.5139, "valid_seconds": 3.1, "valid_score": 0.021},
        {"epoch": 1, "train_seconds": 700.0, "train_loss": 2101.0, "valid_seconds": 2.9, "valid_score": 0.0455},
    ]


def test_recbole_log_without_epoch_lines_gives_no_rows() -> None:
    assert bench_models.parse_recbole_log("Traceback (most recent call last):\n  ...\nValueError: x\n") == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"datasets": ', "line 1: not valid JSON"),
        ('{"results": []}', "no 'datasets' object"),
        ('{"datasets": {"ml-1m": 3}}', "field datasets.ml-1m"),
        ('{"datasets": {"ml-1m": {"models": []}}}', "field datasets.ml-1m"),
    ],
)
def test_a_bad_merge_file_is_a_usage_error_naming_it_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    out = tmp_path / "results.json"
    out.write_text(content)
    monkeypatch.setattr(bench_models, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the check"))
    monkeypatch.setattr(sys, "argv", ["bench_models.py", "--merge", "--out", str(out), "--data-root", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        bench_models.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert str(out) in err and message in err
    assert out.read_text() == content  # left as it was
