"""Generated option values for `recsae run`, `steer` and `sae train`, parsed and checked up to the
point where the work would start (stubbed there): exit 0 or 2 with one line, or the work is
reached; never any other exception."""

from __future__ import annotations

from unittest import mock

import pytest
from fuzzing import CASES, fuzz, scratch
from hypothesis import event, given
from hypothesis import strategies as st

from recsae.cli import main


class Reached(Exception):
    """The command got past its option checks to the stubbed work."""


def _stop(*args: object, **kwargs: object) -> None:
    raise Reached


VALUE = st.one_of(st.integers(-3, 40).map(str), st.integers(-(2**70), 2**70).map(str),
                  st.sampled_from(["nan", "inf", "-inf", "1e-9", "0.5", "", "-", "--", "1e400", "0x10", "true"]),
                  st.floats().map(repr), st.text(max_size=6))

RUN = {
    "--epochs": VALUE, "--patience": VALUE, "--lr": VALUE, "--batch-size": VALUE, "--max-len": VALUE, "--k": VALUE,
    "--expansion": VALUE, "--sae-epochs": VALUE, "--sae-min-rows": VALUE, "--sae-balance": VALUE, "--seed": VALUE,
    "--stages": st.sampled_from(["model", "model,sae", "", ",", "dance", "report", "model,,steer"]) | VALUE,
    "--device": st.sampled_from(["cpu", "auto", "cuda:9", "tpu", "", "cpu:0"]),
    "--model": st.sampled_from(["sasrec", "SASRec", "bpr", "lightgcn", "gru4rec", "xx"]) | VALUE,
    "--dataset": st.sampled_from(["synthetic", "ml-10k", "/nonexistent/log.csv"]),
    "--format": st.sampled_from(["table", "csv", "rechorus"]), "--min-rating": VALUE, "--k-core": VALUE,
    "--concept": st.sampled_from(["concept=c0", "genre=Horror", "=", "x"]) | VALUE,
}
STEER = {
    "--concept": st.sampled_from(["genre=Horror", "=", ""]) | VALUE, "--latent": VALUE, "--alpha": VALUE,
    "--scale": VALUE, "--clamp": VALUE, "--method": st.sampled_from(["add", "mix", "xx"]), "--n-latents": VALUE,
    "--latents-from": st.sampled_from(["decoder", "rules", "xx"]), "--users": VALUE, "--max-users": VALUE,
    "--n-random": VALUE, "--seed": VALUE, "--device": st.sampled_from(["cpu", "auto", "tpu"]),
}
SAE = {
    "--k": VALUE, "--expansion": VALUE, "--epochs": VALUE, "--min-rows": VALUE, "--lr": VALUE, "--batch-size": VALUE,
    "--balance": VALUE, "--patience": VALUE, "--seed": VALUE, "--device": st.sampled_from(["cpu", "auto", "tpu"]),
}
COMMANDS = {"run": (RUN, "recsae.pipeline.run_pipeline"), "steer": (STEER, "recsae.runs.Run.open"),
            "sae train": (SAE, "recsae.models.checkpoint.load_checkpoint")}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_any_option_values_exit_0_or_2_or_reach_the_work(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    options, work = COMMANDS[command]

    @fuzz(80)
    @given(chosen=st.fixed_dictionaries({}, optional=options))
    def check(chosen: dict[str, str]) -> None:
        CASES[f"cli: {command}"] += 1
        with scratch() as root, mock.patch(work, _stop):
            argv = [*command.split(), "--out" if command != "steer" else "--run", str(root / "out")]
            if command == "sae train":
                argv += ["--checkpoint", str(root / "model")]
            for option, value in chosen.items():
                argv += [option, value] if not value.startswith("-") else [f"{option}={value}"]
            try:
                main(argv)
            except Reached:
                event("reached the work")
                return
            except SystemExit as exit_info:
                event(f"exit {exit_info.code}")
                assert exit_info.code in (0, 2, None), argv
                if exit_info.code == 2:
                    err = capsys.readouterr().err
                    assert "Traceback" not in err, argv
            finally:
                capsys.readouterr()

    check()
