"""Small shared helpers: seeding, device choice, environment record, progress bars, logging."""

from __future__ import annotations

import logging
import platform
import random
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from recsae.errors import ConfigError

if TYPE_CHECKING:  # imported where used: the CLI starts without torch
    import torch

T = TypeVar("T")

log = logging.getLogger("recsae")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator seeded with ``seed``."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def default_device(requested: str | None = None) -> torch.device:
    """The requested device, else (None or 'auto') CUDA when available, else CPU. ConfigError
    for a device string torch does not know, or for CUDA on a machine without it."""
    import torch

    if not requested or requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ConfigError(f"unknown device {requested!r}; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r}: CUDA is not available on this machine; use cpu or auto")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device {requested!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def environment_info() -> dict[str, Any]:
    """Versions recorded next to every result, so a run can be reproduced."""
    import torch

    import recsae

    info: dict[str, Any] = {
        "recsae": recsae.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "threads": torch.get_num_threads(),
    }
    for mod in ("pandas", "pyarrow", "scipy", "safetensors"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    return info


def progress(iterable: Iterable[T], desc: str, total: int | None = None, leave: bool = False) -> Iterable[T]:
    """A progress bar on stderr when it is a terminal; silent otherwise (CI logs stay readable)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=leave, disable=None, dynamic_ncols=True)


def setup_logging(verbose: bool = False) -> None:
    """Send recsae's log to stderr as bare messages (DEBUG and up with ``verbose``, else INFO)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
