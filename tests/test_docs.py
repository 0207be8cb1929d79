"""The documentation stands alone: no file points outside the repository for the method, and
every ``docs/method.md §N`` citation names a section that docs/method.md has."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHOD = ROOT / "docs" / "method.md"
OUTSIDE = (b"shared/docs", b"METHOD.md")
"""Case-sensitive: ``docs/method.md`` itself is the in-repository page."""

CITATION = re.compile(r"docs/method\.md\s+§(\d+(?:\.\d+)*)((?:\s*(?:,|and)\s*§\d+(?:\.\d+)*)*)")
"""``docs/method.md §4.3`` and lists such as ``docs/method.md §4.3 and §4.5``."""
HEADING = re.compile(r"^#{2,6}\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)


def tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to list the tracked files")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def sections() -> set[str]:
    return set(HEADING.findall(METHOD.read_text(encoding="utf-8")))


def test_no_file_points_to_the_outside_method_file() -> None:
    this = Path(__file__).resolve()
    offenders = []
    for path in tracked_files():
        if path.resolve() == this or not path.is_file():
            continue
        data = path.read_bytes()
        offenders += [f"{path.relative_to(ROOT)}: {needle.decode()}" for needle in OUTSIDE if needle in data]
    assert not offenders, "point to docs/method.md instead:\n" + "\n".join(offenders)


def test_method_page_has_the_numbered_sections() -> None:
    found = sections()
    assert {str(n) for n in range(1, 10)} <= found, sorted(found)


def test_every_citation_names_an_existing_section() -> None:
    found = sections()
    cited = 0
    missing = []
    for path in tracked_files():
        if path.suffix not in (".py", ".md", ".sh", ".toml", ".txt") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in CITATION.finditer(text):
            numbers = [match.group(1), *re.findall(r"§(\d+(?:\.\d+)*)", match.group(2))]
            for number in numbers:
                cited += 1
                if number not in found:
                    line = text.count("\n", 0, match.start()) + 1
                    missing.append(f"{path.relative_to(ROOT)}:{line}: §{number}")
    assert cited > 0
    assert not missing, "docs/method.md has no such section:\n" + "\n".join(missing)


@pytest.mark.slow
def test_every_python_example_in_the_readme_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)  # the examples write their run folders where they are run
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "runs" / "quick" / "report" / "index.html").is_file()


def test_the_pipeline_example_in_the_readme_is_at_most_eight_lines() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    api = readme[readme.index("## Python API"):]
    block = re.search(r"```python\n(.*?)```", api, flags=re.S)
    assert block is not None
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert any("recsae.run(" in line for line in lines) and any(".steer(" in line for line in lines)
    assert len(lines) <= 8


def test_the_readme_config_file_example_is_a_valid_run_config(tmp_path: Path) -> None:
    from recsae.config import load_config

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README has no config file example"
    for block in blocks:
        (tmp_path / "run.toml").write_text(block)
        cfg = load_config(tmp_path / "run.toml")
        assert cfg.to_dict()["data"]["dataset"] and cfg.model.name
