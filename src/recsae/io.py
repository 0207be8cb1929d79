"""Atomic, pickle-free persistence: JSON, safetensors and Parquet written to a temporary file
in the target folder, then renamed, so an interrupted run never leaves a half-written file."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import shutil
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsae.errors import DataError

if TYPE_CHECKING:  # imported by the writers that need it: the CLI starts without torch
    import torch

FORMAT_VERSION = 1
"""Version of recsae's on-disk formats (checkpoints, activation stores, run folders)."""


def _create_new(parent: Path, prefix: str, suffix: str, directory: bool) -> Path:
    """A new, uniquely named file or folder in ``parent`` with the default permissions: 0o666
    (folders 0o777) less the umask, as for any file the user creates. ``tempfile.mkstemp`` and
    ``mkdtemp`` make them private (0o600, 0o700), and being renamed into place they would make
    every output private. Creating with the mode (not chmod after) also keeps default ACLs."""
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            if directory:
                os.mkdir(path, 0o777)
            else:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free temporary name {prefix}*{suffix} in {parent}")


def make_temp_dir(parent: str | Path, prefix: str) -> Path:
    """A new empty folder ``parent/<prefix><random>`` with the default permissions (0o777 less
    the umask), for outputs built in place and then renamed."""
    return _create_new(Path(parent), prefix, "", directory=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, else delete it.
    The file gets the default permissions (0o666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_new(path.parent, f".{path.name}.", ".tmp", directory=False)
    mode = stat.S_IMODE(tmp_path.stat().st_mode)
    try:
        yield tmp_path
        # some writers (safetensors) replace the file with a private one of their own
        if stat.S_IMODE(tmp_path.stat().st_mode) != mode:
            os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def check_writable_folder(folder: str | Path) -> None:
    """DataError naming the path unless ``folder`` is a folder this process can write into, or
    can be created as one. Creates nothing: meant for the start of a long command, so that it
    does not fail at its first write."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:  # exists() is False below a file
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == folder else f" (so {folder} cannot be made)"
        raise DataError(f"exists and is not a folder{where}", path=existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError("permission denied: cannot write into this folder", path=existing)


_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.(?:[a-z0-9_]{8}\.tmp|partial-[a-z0-9_]{8}|old-[a-z0-9_]{8})")
"""Names of the temporaries recsae writes beside an output (``atomic_path``'s files, activation
stores' partial and replaced folders; the 8 characters are random)."""


def _stale_temporaries(folder: Path, depth: int, target: str | None) -> Iterator[Path]:
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        match = _TEMP_NAME.fullmatch(entry.name)
        if match and (target is None or match["target"] == target):
            yield Path(entry.path)
        elif depth > 0 and not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
            yield from _stale_temporaries(Path(entry.path), depth - 1, target)


def remove_stale_partials(folder: str | Path, depth: int = 2, target: str | None = None) -> list[Path]:
    """Delete the temporaries a killed recsae left in ``folder`` and its subfolders down to
    ``depth`` levels (a run folder's ``sae/train_state`` is two down), and return them. With
    ``target``, only those of the output of that name. Only names recsae makes are touched.

    Call it before writing into a folder, never while another recsae writes there."""
    stale = list(_stale_temporaries(Path(folder), depth, target))
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if stale:
        logging.getLogger("recsae").info("removed %d stale temporary file(s) of an interrupted run in %s",
                                         len(stale), folder)
    return stale


def _plain(obj: Any) -> Any:
    """``obj`` as plain JSON values: NumPy values, tensors and paths converted, and every
    non-finite float (NaN, infinities) as None, since strict JSON has no literal for them."""
    if isinstance(obj, dict):
        return {k.item() if isinstance(k, np.generic) else k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (bool, int, str)) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (np.generic, np.ndarray)):
        return _plain(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    torch_module = sys.modules.get("torch")  # a tensor implies torch is loaded: never import it here
    if torch_module is not None and isinstance(obj, torch_module.Tensor):
        return _plain(obj.detach().cpu().tolist())
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_text(data: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``data`` (see ``_plain``): any JSON parser reads it, NaN becomes null."""
    return json.dumps(_plain(data), indent=indent, allow_nan=False)


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented strict JSON (NumPy values, tensors and paths converted,
    NaN and infinities as null), atomically."""
    text = json_text(data) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``; DataError naming the file (and line) if it is unreadable,
    not JSON or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"not valid JSON ({err.msg}); expected a JSON object", path=path, line=err.lineno) from err
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read ({getattr(err, 'strerror', None) or err}); expected a JSON file", path=path) from err
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON object, found {type(data).__name__}", path=path)
    return data


def check_format_version(meta: dict[str, Any], path: str | Path) -> None:
    """DataError unless ``meta["format_version"]`` is the version this recsae reads."""
    found = meta.get("format_version")
    if found != FORMAT_VERSION:
        raise DataError(
            f"format version {found!r}, but this recsae reads format version {FORMAT_VERSION} "
            "(written by another recsae version?)",
            path=path,
            field="format_version",
        )


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (moved to the CPU) as safetensors, atomically."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def read_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors in the safetensors file ``path``, on ``device``; DataError naming the file if
    it is missing, truncated or not safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(device))
    except OSError as err:
        raise DataError(f"cannot read ({err.strerror or err}); expected a safetensors file", path=path) from err
    except SafetensorError as err:
        raise DataError(f"not a readable safetensors file ({err}); damaged or truncated?", path=path) from err


def write_parquet(path: str | Path, table: Any) -> None:
    """Write a pandas DataFrame or pyarrow Table atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, str(tmp))


def write_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Atomically produce ``path`` with any writer that takes a destination path."""
    with atomic_path(path) as tmp:
        writer(tmp)
