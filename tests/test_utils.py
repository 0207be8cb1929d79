"""recsae.utils.default_device: 'auto' picks a device; bad or unavailable devices are ConfigErrors."""

from __future__ import annotations

import pytest
import torch

from recsae.errors import ConfigError
from recsae.utils import default_device


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
