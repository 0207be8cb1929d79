"""recsae.utils: device choice ('auto' picks a device; bad or unavailable devices are ConfigErrors),
threads that never depend on the load, OpenMP threads that sleep on a busy machine, progress lines
off a terminal."""

from __future__ import annotations

import sys

import pytest
import torch

from recsae import utils
from recsae.errors import ConfigError
from recsae.utils import default_device, environment_info, heartbeat, progress, set_threads


@pytest.mark.parametrize("requested", [None, "auto"])
def test_auto_is_cuda_when_available_else_cpu(requested: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device(requested) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device(requested) == torch.device("cuda")


def test_cpu_is_returned_as_asked() -> None:
    assert default_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("requested", ["foo", "cuda:x", "CPU"])
def test_unknown_device_string_is_a_config_error_naming_it(requested: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown device '{requested}'; expected auto, cpu, cuda"):
        default_device(requested)


@pytest.mark.parametrize("requested", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_a_config_error_saying_so(requested: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available on this machine"):
        default_device(requested)


def test_a_cuda_index_the_machine_lacks_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert default_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match="has 1 CUDA device"):
        default_device("cuda:1")


def test_cli_reports_a_bad_device_in_one_line_with_exit_code_2(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from recsae.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["steer", "--run", str(tmp_path), "--scale", "0", "--latent", "1", "--device", "foo"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: unknown device 'foo'; expected auto, cpu, cuda or cuda:N"]


@pytest.mark.parametrize("load", [0.0, 1.6, 30.0])
def test_default_threads_are_every_core_whatever_the_load(load: float, monkeypatch: pytest.MonkeyPatch) -> None:
    # results depend on the thread count: a busy machine must not change them
    monkeypatch.setattr(utils, "available_cores", lambda: 8)
    monkeypatch.setattr(utils.os, "getloadavg", lambda: (load, 0.0, 0.0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert utils.default_threads() == 8


@pytest.mark.parametrize(("env", "threads"), [("3", 3), ("1", 1), ("0", 8), ("many", 8)])
def test_default_threads_follow_a_valid_omp_num_threads(env: str, threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(utils, "available_cores", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert utils.default_threads() == threads


@pytest.mark.parametrize(("load", "others", "preset", "torch_loaded", "passive"), [
    (2.0, 2, None, False, True),       # busy: idle threads sleep
    (2.0, None, None, False, True),    # busy where only the load is known
    (0.3, 2, None, False, False),      # idle: they spin (faster)
    (1.6, 0, None, False, False),      # a lagging load after a finished job, nothing else running now
    (2.0, 2, "ACTIVE", False, False),  # the user's policy wins
    (2.0, 2, None, True, False),       # too late once torch is loaded: leave the environment alone
])
def test_yield_when_busy_sets_a_passive_wait_policy_only_when_busy_and_free_to(
        load: float, others: int | None, preset: str | None, torch_loaded: bool, passive: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(utils.os, "getloadavg", lambda: (load, 0.0, 0.0))
    monkeypatch.setattr(utils, "runnable_others", lambda: others)
    if preset is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", preset)
    if not torch_loaded:  # as in a fresh `recsae` process (restored after the test)
        monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert utils.yield_when_busy() is passive
    assert utils.os.environ.get("OMP_WAIT_POLICY") == ("PASSIVE" if passive else preset)


@pytest.mark.skipif(not utils.os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
def test_runnable_others_counts_a_spinning_process() -> None:
    import subprocess
    import time

    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 10
        while (seen := utils.runnable_others()) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen is not None and seen >= 1
    finally:
        child.kill()
        child.wait()


def test_set_threads_sets_torch_logs_and_is_recorded_with_the_versions(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="recsae"):
        assert set_threads(1) == 1
    assert torch.get_num_threads() == 1 and environment_info()["threads"] == 1
    assert "threads: 1 (" in caplog.text
    with pytest.raises(ConfigError, match="--threads must be >= 1"):
        set_threads(0)


def test_progress_off_a_terminal_logs_lines_for_a_long_step_and_none_for_a_short_one(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with caplog.at_level("INFO", logger="recsae"):
        assert list(progress(range(4), desc="quick")) == [0, 1, 2, 3]
        assert "quick" not in caplog.text
        monkeypatch.setattr(utils, "PROGRESS_SECONDS", 0.0)  # every item now counts as a long wait
        list(progress(range(4), desc="harvest"))
    assert "harvest: 1/4 (25 %)" in caplog.text and "harvest: 4/4 (100 %)" in caplog.text


def test_heartbeat_off_a_terminal_says_a_long_step_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    import time

    with caplog.at_level("INFO", logger="recsae"), heartbeat("interpret", every=0.05):
        time.sleep(0.3)
    assert "interpret: running for" in caplog.text
