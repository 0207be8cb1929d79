"""Small shared helpers: seeding, device choice, environment record, progress bars, logging."""

from __future__ import annotations

import logging
import os
import platform
import random
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sized
from contextlib import contextmanager
from pathlib import Path
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


def available_cores() -> int:
    """CPU cores this process may run on (its affinity where the platform says, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads() -> int:
    """torch's CPU threads when ``--threads`` is not given: ``OMP_NUM_THREADS`` where set (torchrun
    sets 1 per rank), else every core. Never the machine's load: results depend on the thread
    count (parallel reductions sum in another order), so the same command and seed must get the
    same count on the same machine, busy or idle. On a busy machine ``yield_when_busy`` keeps
    the threads from fighting other jobs instead."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else available_cores()


def machine_load() -> float:
    """The 1-minute load average (0 where the platform has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


BUSY_LOAD = 1.0
"""A 1-minute load from this on means other work keeps about a core busy."""


def runnable_others() -> int | None:
    """Threads of other processes running or ready to run right now (Linux's /proc), None where
    unknown. The 1-minute load lags: right after a run ends it still says 1.5 on an idle machine;
    and this process's own threads (numpy's, say) do not count."""
    proc = Path("/proc")
    if not (proc / "self" / "task").is_dir():
        return None
    own = str(os.getpid())
    running = 0
    for stat in proc.glob("[0-9]*/task/*/stat"):
        if stat.parts[2] == own:
            continue
        try:
            # "pid (comm) S ...": the state follows the last ')' (comm may hold spaces and parentheses)
            running += stat.read_text().rpartition(")")[2].split()[0] == "R"
        except (OSError, IndexError):  # the task ended meanwhile
            continue
    return running


def machine_busy() -> bool:
    """Other work keeps a core busy: the 1-minute load says so and, where known, another
    process's thread is running now."""
    if machine_load() < BUSY_LOAD:
        return False
    others = runnable_others()
    return others is None or others >= 1


def yield_when_busy() -> bool:
    """On a busy machine, let idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY``
    passive), unless the user set the policy. Spinning threads that share cores with another
    job slow both down (an SAE stage ran 3x slower beside another torch job, and 18x under a
    heavier one); sleeping costs ~10 % on an idle machine, so only when busy. Numerics do not
    change. Must run before torch is imported (the OpenMP runtime reads it once); returns
    whether it set it."""
    if "OMP_WAIT_POLICY" in os.environ or "torch" in sys.modules or not machine_busy():
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def set_threads(requested: int | None = None) -> int:
    """Set torch's intra-op threads to ``requested`` (None: ``default_threads``), log it and return it.

    ``environment_info()['threads']`` records the number next to every result."""
    import torch

    if requested is not None and requested < 1:
        raise ConfigError(f"--threads must be >= 1, got {requested}")
    n = requested or default_threads()
    torch.set_num_threads(n)
    policy = os.environ.get("OMP_WAIT_POLICY", "").lower()
    log.info("threads: %d (%d cores, load %.1f%s)", n, available_cores(), machine_load(),
             "; idle threads sleep" if policy == "passive" else "")
    return n


PROGRESS_SECONDS = 10.0
"""Off a terminal, a step that runs longer than this logs a progress line at most this often."""

_last_progress = [0.0]
"""Monotonic time of the last progress line (a heartbeat stays quiet while they come)."""


def progress(iterable: Iterable[T], desc: str, total: int | None = None, leave: bool = False) -> Iterable[T]:
    """A progress bar on stderr when it is a terminal; otherwise (logs, CI) a line about every
    ``PROGRESS_SECONDS`` while the step runs ("harvest: 40/100 (40 %), 12 s"), none for a short step."""
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, leave=leave, dynamic_ncols=True)
    if total is None and isinstance(iterable, Sized):
        total = len(iterable)
    return _logged(iterable, desc, total)


def _logged(iterable: Iterable[T], desc: str, total: int | None) -> Iterator[T]:
    start = last = time.monotonic()
    for n, item in enumerate(iterable, start=1):
        yield item
        now = time.monotonic()
        if now - last >= PROGRESS_SECONDS:
            last = _last_progress[0] = now
            share = f" ({100 * n / total:.0f} %)" if total else ""
            log.info("%s: %d%s%s%s, %.0f s", desc, n, "/" if total else "", total or "", share, now - start)


@contextmanager
def heartbeat(desc: str, every: float = 30.0) -> Iterator[None]:
    """Off a terminal, log "desc: running for N s" every ``every`` seconds while the block runs,
    unless progress lines came meanwhile: a long step without a loop of its own still shows it lives."""
    if sys.stderr.isatty():
        yield
        return
    start = time.monotonic()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            now = time.monotonic()
            if now - _last_progress[0] >= every:
                log.info("%s: running for %.0f s", desc, now - start)

    thread = threading.Thread(target=beat, name=f"heartbeat {desc}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def setup_logging(verbose: bool = False) -> None:
    """Send recsae's log to stderr as bare messages (DEBUG and up with ``verbose``, else INFO)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
