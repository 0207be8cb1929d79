"""The documentation stands alone and its examples work as written.

No file points outside the repository for the method, and every ``docs/method.md §N`` citation
names a section that docs/method.md has. Every example in the README (Python and shell) and
every command line in a ``--help`` text is run by a test, on small data where the documented
one is large (see ``SMALL`` and ``on_small_data``), or named in ``NOT_RUN`` with the reason;
every ``recsae`` command line, run or not, parses with the CLI's own parser and names datasets,
models and concepts that exist.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fake_run_folder import write_untrained_run

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
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
    readme = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)  # the examples write their run folders where they are run
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "runs" / "quick" / "report" / "index.html").is_file()


def test_the_pipeline_example_in_the_readme_is_at_most_eight_lines() -> None:
    readme = README.read_text(encoding="utf-8")
    api = readme[readme.index("## Python API"):]
    block = re.search(r"```python\n(.*?)```", api, flags=re.S)
    assert block is not None
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert any("recsae.run(" in line for line in lines) and any(".steer(" in line for line in lines)
    assert len(lines) <= 8


def test_the_readme_config_file_example_is_a_valid_run_config(tmp_path: Path) -> None:
    from recsae.config import load_config

    readme = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README has no config file example"
    for block in blocks:
        (tmp_path / "run.toml").write_text(block)
        cfg = load_config(tmp_path / "run.toml")
        assert cfg.to_dict()["data"]["dataset"] and cfg.model.name


# ---- shell examples of the README and command lines of the --help texts ----------------------

SHELL_BLOCK = re.compile(r"```(?:bash|sh|console)\n(.*?)```", re.S)

NOT_RUN = {
    "python3 -m venv": "installs the package into a fresh venv, then runs the 3-minute quickstart; CI installs "
                       "the same way (scripts/test.sh), and the run's stages run here on ml-100k with SMALL settings, "
                       "and in full in the README's Python example",
    "bash scripts/test.sh": "the whole test suite, which CI runs as such",
    "recsae explain": "needs a language-model server; tests/cli/test_explain_cli.py runs recsae explain on a "
                      "finished run against a local OpenAI-compatible server",
    "recsae data fetch": "downloads from the internet, which CI cannot reach; tests/data/test_fetch_cli.py "
                         "fetches a local archive",
    "recsae run --dataset ml-1m --data-root ~/.cache/recsae/data --out runs/ml1m": "ML-1M, about 20 minutes; the "
                         "pipeline block runs the same command on ml-100k",
    "torchrun": "several processes on several GPUs or machines; tests/test_pipeline_distributed.py runs recsae run "
                "under torchrun with 2 gloo processes",
}
"""README lines that no test runs (matched at the start of a line), with the reason; each still
parses (``test_every_recsae_command_in_the_readme_parses...``)."""

SMALL = {
    "train": ["--epochs", "1"],
    "sae train": ["--epochs", "1", "--min-rows", "0", "--expansion", "2"],
    "run": ["--epochs", "1", "--sae-epochs", "1", "--sae-min-rows", "0", "--expansion", "2", "--no-controls",
            "--no-causal"],
    "steer": ["--max-users", "100", "--n-random", "1"],
}
"""Options appended to a documented command when a test runs it (the last value of an option wins):
one epoch, a small SAE (expansion 2 still gives a 64-d model 128 latents, so ``--latent 123``
exists), no controls, few users."""

DATA_PLACEHOLDERS = ("DATA", "~/.cache/recsae/data")
"""Data roots the README writes; a test reads the real datasets' folder there (the ``data_root`` fixture)."""


def shell_blocks() -> list[list[str]]:
    """The README's shell examples: per block its logical lines (continuations joined, comment
    lines and a console prompt dropped)."""
    blocks = []
    for body in SHELL_BLOCK.findall(README.read_text(encoding="utf-8")):
        lines = (ln.strip().removeprefix("$ ") for ln in body.replace("\\\n", " ").splitlines())
        blocks.append([ln for ln in lines if ln and not ln.startswith("#")])
    return blocks


def recsae_args(line: str) -> list[str] | None:
    """The arguments of the ``recsae`` command a shell line runs (also as ``a && .venv/bin/recsae ...``
    or ``torchrun ... -m recsae ...``), None when it runs none; a word ``...`` (any further options)
    is left out. Only ``&&`` and ``||`` end it: shlex's words do not tell a quoted ``';'`` (a value
    of ``--sep``) from the shell's ``;``."""
    words = shlex.split(line, comments=True)
    for i, word in enumerate(words):
        if word.rsplit("/", 1)[-1] == "recsae":
            rest = words[i + 1 :]
            rest = rest[: next((j for j, w in enumerate(rest) if w in ("&&", "||")), len(rest))]
            return [w for w in rest if w != "..."]
    return None


def command_name(args: list[str]) -> str:
    """'sae train' for ``recsae sae train ...``, 'run' for ``recsae run ...``."""
    return " ".join(args[:2]) if args[0] in ("sae", "data") else args[0]


def parse(args: list[str]) -> dict[str, Any]:
    """The option values ``recsae ARGS`` would run with, from the CLI's own parser without running
    it: a click error (unknown option, a value of the wrong type or out of range) otherwise."""
    import typer

    from recsae.cli import app

    cmd: Any = typer.main.get_command(app)
    rest = list(args)
    while hasattr(cmd, "commands"):  # a group: its subcommand by name
        assert rest and rest[0] in cmd.commands, f"recsae {' '.join(args)}: no such command"
        cmd = cmd.commands[rest.pop(0)]
    return cmd.make_context(f"recsae {command_name(args)}", rest).params


def not_run_reason(line: str) -> str | None:
    return next((reason for start, reason in NOT_RUN.items() if line.startswith(start)), None)


def on_small_data(args: list[str], data_root: Path | None) -> list[str]:
    """A documented command as a test runs it: the real data root for the placeholders, ml-100k
    for ML-1M where the command trains a model, and the ``SMALL`` options appended; a run whose
    stages the README leaves open stops after the SAE stage (its distinct part, the model or SAE
    it is given; the later stages run in the pipeline block's ``--stages interpret`` run and the
    commands after it)."""
    name = command_name(args)
    out = [str(data_root) if a in DATA_PLACEHOLDERS and data_root is not None else a for a in args]
    if name in ("train", "run"):
        out = ["ml-100k" if a == "ml-1m" and out[i - 1] == "--dataset" else a for i, a in enumerate(out)]
    if name == "run" and "--stages" not in args:
        out += ["--stages", "sae"]
    return out + SMALL.get(name, [])


def _dataset_concepts(name: str, data_root: Path) -> Any:
    from recsae.data.registry import DatasetOptions
    from recsae.data.split import make_split
    from recsae.steer.targets import concept_items

    return concept_items(make_split(DatasetOptions(name, data_root).load(0)))


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary working folder (the README's relative paths land there)."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_the_readme_has_shell_examples_with_recsae_commands_and_every_not_run_entry_is_used() -> None:
    lines = [ln for block in shell_blocks() for ln in block]
    assert sum(recsae_args(ln) is not None for ln in lines) >= 10
    unused = [start for start in NOT_RUN if not any(ln.startswith(start) for ln in lines)]
    assert not unused, f"NOT_RUN names lines the README no longer has: {unused}"


def test_every_recsae_command_in_the_readme_parses_and_names_existing_datasets_models_and_concepts(
    data_root: Path, tmp_path: Path
) -> None:
    from recsae.data.registry import list_datasets
    from recsae.models.registry import model_class

    names = {spec.name for spec in list_datasets()}
    dataset_of: dict[str, str] = {}  # run folder (--out) -> the dataset the README ran it on
    concepts: dict[str, Any] = {}
    checked = 0
    for line in (ln for block in shell_blocks() for ln in block):
        if (args := recsae_args(line)) is None:
            continue
        params = parse(args)
        dataset = params.get("dataset") or params.get("name")  # `data fetch NAME`
        if dataset is not None and not Path(dataset).suffix:
            assert dataset in names, f"{line}: no dataset {dataset!r}"
        if params.get("model"):
            model_class(params["model"])
        if dataset is not None and params.get("out") is not None:
            dataset_of[str(params["out"])] = dataset
        given = params.get("concept") or []
        for concept in [given] if isinstance(given, str) else given:
            on = dataset or dataset_of[str(params["run"])]
            if on not in concepts:
                concepts[on] = _dataset_concepts(on, data_root)
            concepts[on].mask(concept)  # ConfigError naming the closest valid ones
            checked += 1
    from recsae.config import load_config

    for block in re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S):
        (tmp_path / "run.toml").write_text(block)
        cfg = load_config(tmp_path / "run.toml")
        for concept in cfg.steer.concepts:  # the config file's concepts, on its dataset
            _dataset_concepts(cfg.data.dataset, data_root).mask(concept)
            checked += 1
    assert checked >= 2, "the README's concepts were not all checked"


def write_user_files(folder: Path, data_root: Path) -> None:
    """The files the README's commands take from the user, made as the README describes them:
    my_model.py and run.toml from its examples (with the real data root), and the exported
    arrays of embeddings mode (random vectors for ml-100k's users and items, with their ids)."""
    import numpy as np

    from recsae.data.registry import DatasetOptions

    readme = README.read_text(encoding="utf-8")
    (model_py,) = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if b.startswith("# my_model.py")]
    (folder / "my_model.py").write_text(model_py)
    (toml,) = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    (folder / "run.toml").write_text(toml.replace('"DATA"', f'"{data_root}"'))
    ds = DatasetOptions("ml-100k", data_root).load(0)
    rng = np.random.default_rng(0)
    for name, ids in (("users", ds.user_ids[1:]), ("items", ds.item_ids[1:])):
        np.save(folder / f"{name}.npy", rng.standard_normal((len(ids), 16)).astype(np.float32))
        (folder / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))


@pytest.mark.slow
def test_the_readme_shell_examples_run_in_order_in_one_folder_or_are_marked_not_run(
    in_tmp: Path, run_cli: Any, data_root: Path
) -> None:
    write_user_files(in_tmp, data_root)
    ran = 0
    for line in (ln for block in shell_blocks() for ln in block):
        if not_run_reason(line) is not None:
            continue
        args = recsae_args(line)
        if args is None:  # a shell line that makes the example's input files
            result = subprocess.run(["bash", "-c", line], cwd=in_tmp, capture_output=True, text=True)
            assert result.returncode == 0, f"{line}\n{result.stderr}"
            continue
        code, _, err = run_cli(on_small_data(args, data_root))
        assert code == 0, f"recsae {' '.join(args)} failed as a test runs it:\n{err[-3000:]}"
        ran += 1
    assert ran >= 15


def test_the_json_spec_example_reads_the_table_the_column_options_example_reads(in_tmp: Path) -> None:
    from recsae.data.registry import DatasetOptions

    (lines,) = [b for b in shell_blocks() if any("plays.txt" in ln for ln in b)]
    for line in lines:
        if recsae_args(line) is None:
            subprocess.run(["bash", "-c", line], cwd=in_tmp, check=True)
    (spec,) = [b for b in re.findall(r"```json\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
               if "plays.txt" in b]
    (in_tmp / "plays.json").write_text(spec)
    stats_line = next(ln for ln in lines if (a := recsae_args(ln)) and command_name(a) == "data stats")
    params = parse(recsae_args(stats_line) or [])
    from recsae.cli.data import table_options

    by_options = DatasetOptions(str(in_tmp / "plays.txt"), table=table_options(
        params["sep"], params["user_col"], params["item_col"], rating_col="plays", title_col="name",
        multi_col=["tags:|"], item_table=in_tmp / "artists.txt")).load(0)
    by_spec = DatasetOptions(str(in_tmp / "plays.json")).load(0)
    assert by_spec.n_interactions == by_options.n_interactions > 0
    assert by_spec.item_meta.title == by_options.item_meta.title
    assert by_spec.item_meta.multi == by_options.item_meta.multi and "tags" in by_spec.item_meta.multi


HELP_EXAMPLE = re.compile(r"(?:^|:\s)(recsae\s[^\n`]+?)\s*$", re.M)
"""A command line in a help text: a line of its own, or after a colon (``Ablate one latent: recsae ...``)."""
HELP_CONCEPT = re.compile(r"(\w+=[\w-]+) on (the synthetic data|MovieLens)")
"""A concept named in a help text, with the data it belongs to."""


def help_texts() -> dict[str, list[str]]:
    """Every command's help: its description and each option's help, by command name."""
    import typer

    from recsae.cli import app

    texts: dict[str, list[str]] = {}

    def walk(cmd: Any, path: list[str]) -> None:
        texts[" ".join(path)] = [cmd.help or "", *(getattr(p, "help", None) or "" for p in cmd.params)]
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return texts


def test_every_concept_a_help_text_names_exists_on_the_data_it_names(data_root: Path) -> None:
    datasets = {"the synthetic data": "synthetic", "MovieLens": "ml-100k"}
    named = [(c, on) for texts in help_texts().values() for text in texts for c, on in HELP_CONCEPT.findall(text)]
    concept_options = [text for texts in help_texts().values() for text in texts[1:] if "Concept to" in text]
    assert concept_options and all(HELP_CONCEPT.search(text) for text in concept_options)
    for text in concept_options:  # every concept-like word of a --concept help says which data it is on
        assert {w for w in re.findall(r"\w+=[\w-]+", text)} <= {c for c, _ in HELP_CONCEPT.findall(text)}, text
    for on in {on for _, on in named}:
        items = _dataset_concepts(datasets[on], data_root)
        for concept in {c for c, o in named if o == on}:
            items.mask(concept)


@pytest.mark.slow
def test_every_command_line_in_a_help_text_runs_on_a_run_of_the_synthetic_data(
    tmp_path: Path, in_tmp: Path, run_cli: Any
) -> None:
    run = write_untrained_run(tmp_path / "run", n_latents=128)
    examples = [(name, m) for name, texts in help_texts().items() for m in HELP_EXAMPLE.findall(texts[0])]
    assert len(examples) >= 3
    for name, example in examples:
        args = [str(run) if a == "OUT" else a for a in shlex.split(example)[1:]]
        assert command_name(args) == name, f"the help of recsae {name} shows another command: {example}"
        parse(args)
        code, _, err = run_cli(on_small_data(args, None))
        assert code == 0, f"{example}\n{err[-3000:]}"
