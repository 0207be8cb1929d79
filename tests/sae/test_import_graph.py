"""``recsae.sae`` is a self-contained SAE core: besides itself it imports only recsae's errors, io,
utils and distributed (torchrun's collectives, a leaf module itself), never the recommender side (models, probe, eval, data) nor a later stage, neither at
import time nor inside a function."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import recsae.sae

SAE_DIR = Path(recsae.sae.__file__).parent
MODULES = sorted(
    "recsae.sae" if path.stem == "__init__" else f"recsae.sae.{path.stem}" for path in SAE_DIR.glob("*.py")
)
ALLOWED = ("recsae.sae", "recsae.errors", "recsae.io", "recsae.utils", "recsae.distributed")
NAMED = ("recsae.models", "recsae.probe", "recsae.eval")
"""The packages the issue names; ALLOWED already excludes them, they are checked by name too."""


def _allowed(module: str) -> bool:
    return module == "recsae" or any(module == ok or module.startswith(ok + ".") for ok in ALLOWED)


def _imported_names(path: Path) -> list[str]:
    """Every module ``path`` imports anywhere (top level, functions, TYPE_CHECKING blocks), relative
    imports resolved, plus string constants naming a recsae module (importlib by name)."""
    package = "recsae.sae"
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("recsae."):
            names.append(node.value.split()[0])
    return names


def test_no_file_of_the_sae_package_imports_beyond_errors_io_utils_distributed() -> None:
    files = sorted(SAE_DIR.glob("*.py"))
    assert len(files) >= 5  # __init__, config, metrics, model, train
    bad = {
        f.name: sorted({n for n in names if n.split(".")[0] == "recsae" and not _allowed(n)})
        for f in files
        if (names := _imported_names(f))
    }
    assert {name: b for name, b in bad.items() if b} == {}


def test_the_ast_check_catches_a_lazy_import_of_a_named_package(tmp_path: Path) -> None:
    # the check itself must be able to fail: an import inside a function, and a relative one
    src = tmp_path / "lazy.py"
    src.write_text("def f():\n    from recsae.probe.store import ActivationStore\n    from .. import models\n")
    names = _imported_names(src)
    assert "recsae.probe.store" in names and "recsae.models" in names
    assert not _allowed("recsae.probe.store") and not _allowed("recsae.models")


@pytest.fixture(scope="module")
def loaded_by() -> dict[str, list[str]]:
    """Per module of the package, the recsae modules a fresh interpreter holds after importing it
    (and, for the package, loading each of its lazily imported names); run side by side."""
    code = (
        "import importlib, sys\n"
        "m = importlib.import_module(sys.argv[1])\n"
        "for name in getattr(m, '__all__', ()):\n"
        "    getattr(m, name)\n"
        "print('\\n'.join(sorted(k for k in sys.modules if k == 'recsae' or k.startswith('recsae.'))))\n"
    )
    procs = {m: subprocess.Popen([sys.executable, "-c", code, m], stdout=subprocess.PIPE, text=True) for m in MODULES}
    out = {}
    for module, proc in procs.items():
        stdout, _ = proc.communicate()
        assert proc.returncode == 0, module
        out[module] = stdout.split()
    return out


@pytest.mark.parametrize("module", MODULES)
def test_importing_a_sae_module_loads_no_models_probe_or_eval(module: str, loaded_by: dict[str, list[str]]) -> None:
    loaded = loaded_by[module]
    assert module in loaded
    assert [m for m in loaded if m.startswith(NAMED)] == []
    assert [m for m in loaded if not _allowed(m)] == []
