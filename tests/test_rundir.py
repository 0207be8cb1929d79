"""RunDir is the run folder's one layout: its paths are its names under the root, and the layout
docs/ARCHITECTURE.md lists is exactly RunDir's."""

from __future__ import annotations

import re
from pathlib import Path

from recsae.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]


def _names() -> dict[str, str]:
    return {k: v for k, v in vars(RunDir).items() if k.isupper() and isinstance(v, str)}


def test_every_path_is_its_entry_name_under_the_root(tmp_path: Path) -> None:
    run = RunDir(str(tmp_path))  # a str root is taken as a Path
    paths = {p: getattr(run, p) for p in vars(RunDir) if isinstance(vars(RunDir)[p], property)}
    assert len(paths) == len(_names())  # one path per name
    for path in paths.values():
        assert isinstance(path, Path) and path.is_relative_to(tmp_path)
        assert path.name in _names().values()
    assert run.latent_examples == tmp_path / RunDir.REPORT_DATA / RunDir.LATENT_EXAMPLES
    assert run.seed_sae_control == tmp_path / RunDir.CONTROLS / RunDir.SEED_SAE_CONTROL


def test_the_documented_layout_is_run_dirs() -> None:
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    block = text[text.index("## Run folder"):]
    block = block[block.index("```") + 3:]
    documented = set(re.findall(r"^OUT/(\S+?)/?\s", block[: block.index("```")], flags=re.M))
    run = RunDir("OUT")
    leaves = {p for p in vars(RunDir) if isinstance(vars(RunDir)[p], property)}
    listed = {str(getattr(run, p).relative_to("OUT")) for p in leaves}
    # the listing names the folders' leaves, not the folders that only hold them (controls, report_data)
    assert documented <= listed
    assert listed - documented == {RunDir.CONTROLS, RunDir.REPORT, f"{RunDir.REPORT_DATA}/{RunDir.LATENT_EXAMPLES}"}
