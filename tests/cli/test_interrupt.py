"""Ctrl-C and SIGTERM during a command: one line saying what is kept, exit code 128 + signal."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from recsae.cli import INTERRUPTED


def _sigint_as_keyboard_interrupt() -> None:
    # a shell without job control starts background jobs with SIGINT ignored, which Python keeps
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_a_run_says_finished_stages_are_kept_and_exits_128_plus_its_number(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "recsae", "run", "--out", str(tmp_path / "out"), "--stages", "model"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_as_keyboard_interrupt,
    )
    try:
        assert proc.stderr is not None
        first = [proc.stderr.readline() for _ in range(2)]  # "threads: N (C cores, load L)", then the first stage
        assert first[0].startswith("threads: ") and first[1].startswith("== data"), first
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == code, err
    assert err.splitlines()[-1] == INTERRUPTED
    assert "Traceback" not in err and "Aborted" not in err
