"""Running under ``torchrun``: the process group, the world's shape and the few collectives
recsae needs.

``torchrun`` (``python -m torch.distributed.run``) starts one process per rank with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. :func:`init_world` joins
them: NCCL when the ranks run on CUDA, gloo on CPU. Without that environment (or with
``WORLD_SIZE=1``) the world is one process, no process group exists, and every helper here does
nothing (or runs its function directly), so single-process code paths do not change.

Every collective times out after ``RECSAE_DIST_TIMEOUT`` seconds (default 1800): a rank that
died or stopped taking part makes the others raise a one-line :class:`DistributedError` instead
of waiting forever. (With gloo a rank that died is usually noticed at once: its sockets close.)
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from recsae.errors import ConfigError, DistributedError
from recsae.utils import default_device, log

T = TypeVar("T")
A = TypeVar("A", Tensor, np.ndarray)

TIMEOUT_ENV = "RECSAE_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0
"""Seconds a collective waits for the other ranks (a stage run once on rank 0 while the others
wait must finish within it)."""


@dataclass(frozen=True)
class World:
    """The processes that run one job together, as seen from one of them."""

    rank: int
    """This process's rank, 0 .. world_size − 1 (``RANK``)."""
    world_size: int
    """Number of processes (``WORLD_SIZE``)."""
    local_rank: int
    """Rank on this machine (``LOCAL_RANK``): the CUDA device this process uses."""
    device: torch.device
    """Where this process computes (and where the collectives' tensors live)."""

    @property
    def distributed(self) -> bool:
        """True when there is more than one process (and so a process group)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that writes shared files and logs."""
        return self.rank == 0


def single(device: str | torch.device | None = None) -> World:
    """The world of one process on ``device`` (default: ``recsae.utils.default_device``)."""
    return World(0, 1, 0, default_device(None if device is None else str(device)))


def env_world(env: dict[str, str] | None = None) -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) without it."""
    env = dict(os.environ) if env is None else env
    values = []
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        raw = env.get(name)
        try:
            values.append(default if raw is None else int(raw))
        except ValueError:
            raise ConfigError(f"environment variable {name}={raw!r}: expected an integer (torchrun sets it)") from None
    rank, size, local = values
    if size < 1 or not 0 <= rank < size or local < 0:
        raise ConfigError(f"torchrun environment: RANK={rank}, WORLD_SIZE={size}, LOCAL_RANK={local} "
                          "(expected 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0)")
    return rank, size, local


def collective_timeout(env: dict[str, str] | None = None) -> float:
    """Seconds from ``RECSAE_DIST_TIMEOUT`` (default ``DEFAULT_TIMEOUT_S``)."""
    raw = (dict(os.environ) if env is None else env).get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"environment variable {TIMEOUT_ENV}={raw!r}: expected a number of seconds > 0")
    return seconds


def init_world(device: str | None = None, timeout_s: float | None = None) -> World:
    """Join the process group torchrun's environment describes and return this process's world.

    ``device``: None or ``auto`` (CUDA when available), ``cpu`` or ``cuda``; under torchrun
    ``cuda`` means this rank's own GPU, ``cuda:LOCAL_RANK``. NCCL on CUDA, gloo on CPU. Ranks
    other than 0 then log warnings and errors only. Without torchrun's environment: the
    single-process world, and nothing is initialised. Calling it again returns the same world."""
    import torch.distributed as dist

    rank, size, local = env_world()
    if size == 1:
        return single(device)
    dev = default_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local)
        default_device(str(dev))  # ConfigError when this machine has fewer GPUs than ranks
    world = World(rank, size, local, dev)
    if dist.is_initialized():
        return world
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    seconds = timeout_s if timeout_s is not None else collective_timeout()
    with _collective(world, "joining the process group (init_process_group)"):
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=size,
                                timeout=timedelta(seconds=seconds))
    if not world.is_main:
        log.addFilter(_warnings_only)
    return world


def _warnings_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def shutdown(world: World) -> None:
    """Leave the process group (every rank, at the end of the job)."""
    import torch.distributed as dist

    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
        log.removeFilter(_warnings_only)


def leave_together(world: World, what: str) -> None:
    """Every rank meets at a barrier, then leaves the process group (nothing when it was left
    already, or in a single process): a rank that left while another still held its
    connections could abort in the backend's teardown."""
    import torch.distributed as dist

    if world.distributed and dist.is_initialized():
        barrier(world, what)
        shutdown(world)


@contextmanager
def _collective(world: World, what: str) -> Iterator[None]:
    """Turn the backend's error (a peer closed its connection, a timeout) into one line."""
    try:
        yield
    except RuntimeError as err:  # gloo raises RuntimeError, NCCL DistBackendError (a subclass)
        raise DistributedError(
            f"rank {world.rank} of {world.world_size}: {what} failed ({_reason(err)}); another rank died "
            "or stopped taking part, see its log"
        ) from None


def _reason(err: BaseException) -> str:
    # "[/path/to/pair.cc:553] Connection closed by peer [...]. This is typically ..." → its first sentence
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
    return text.split(". ")[0].rstrip(".")


def rank_slice(n: int, world: World) -> slice:
    """This rank's contiguous block of ``n`` items: blocks in rank order, sizes within one."""
    return slice(n * world.rank // world.world_size, n * (world.rank + 1) // world.world_size)


def batch_share(n: int, batch_size: int, world: World) -> slice:
    """This rank's rows of ``n`` rows processed in batches of ``batch_size``: a contiguous block
    of whole batches (``rank_slice`` of the batches), so that every batch is the one a single
    process computes and the gathered results are bit for bit a single process's."""
    batches = rank_slice(-(-n // batch_size), world)
    return slice(min(n, batches.start * batch_size), min(n, batches.stop * batch_size))


def barrier(world: World, what: str = "barrier") -> None:
    """Wait until every rank reaches this point (nothing in a single process)."""
    import torch.distributed as dist

    if world.distributed:
        with _collective(world, what):
            if world.device.type == "cuda":
                dist.barrier(device_ids=[world.device.index])
            else:
                dist.barrier()


_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN"}


def all_reduce(world: World, x: A, op: str = "sum", what: str = "all_reduce") -> A:
    """``x`` (a tensor or an array) reduced over the ranks (``sum``, ``max`` or ``min``): a new
    tensor or array of the same type, device and dtype; ``x`` itself in a single process."""
    import torch.distributed as dist

    if not world.distributed:
        return x
    t = torch.from_numpy(np.array(x)) if isinstance(x, np.ndarray) else x.detach()
    buf = t.to(world.device, copy=True)
    with _collective(world, what):
        dist.all_reduce(buf, op=getattr(dist.ReduceOp, _OPS[op]))
    if isinstance(x, np.ndarray):
        return buf.cpu().numpy()
    return buf.to(x.device)


def all_gather(world: World, x: Tensor, what: str = "all_gather") -> list[Tensor]:
    """Every rank's ``x`` (same shape and dtype on every rank), in rank order."""
    import torch.distributed as dist

    if not world.distributed:
        return [x]
    buf = x.detach().to(world.device, copy=True)
    out = [torch.empty_like(buf) for _ in range(world.world_size)]
    with _collective(world, what):
        dist.all_gather(out, buf)
    return [t.to(x.device) for t in out]


def all_gather_rows(world: World, x: np.ndarray, what: str = "all_gather") -> np.ndarray:
    """Every rank's rows of ``x`` (any count per rank, the same trailing shape and dtype),
    concatenated in rank order: no padding rows, no duplicates."""
    if not world.distributed:
        return x
    counts = all_gather(world, torch.tensor([len(x)], dtype=torch.int64), what)
    width = max(int(c[0]) for c in counts)
    padded = np.zeros((width, *x.shape[1:]), dtype=x.dtype)
    padded[: len(x)] = x
    blocks = all_gather(world, torch.from_numpy(padded), what)
    return np.concatenate([b.numpy()[: int(c[0])] for b, c in zip(blocks, counts, strict=True)])


def sum_gradients(world: World, params: list[torch.nn.Parameter]) -> None:
    """Sum the parameters' gradients over the ranks, in one flat reduction (a missing gradient
    counts as zero and becomes one)."""
    if not world.distributed:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = all_reduce(world, torch.cat([g.reshape(-1) for g in grads]), what="gradient all_reduce")
    for p, g in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.grad = g.view_as(p)


def broadcast_(world: World, tensors: list[Tensor], src: int = 0, what: str = "broadcast") -> None:
    """Overwrite ``tensors`` in place with rank ``src``'s values."""
    import torch.distributed as dist

    if not world.distributed:
        return
    with _collective(world, what):
        for t in tensors:
            buf = t.data.to(world.device)
            dist.broadcast(buf, src)
            if buf is not t.data:
                t.data.copy_(buf)


def once(world: World, fn: Callable[[], T], what: str) -> T | None:
    """Run ``fn`` on rank 0 while the other ranks wait; return its result on rank 0, None on
    the others. When ``fn`` raises on rank 0, the others raise a ``DistributedError`` naming
    ``what`` (rather than wait at a barrier rank 0 never reaches) and rank 0 raises the error."""
    if not world.distributed:
        return fn()
    result: T | None = None
    error: Exception | None = None
    if world.is_main:
        try:
            result = fn()
        except Exception as err:  # told to the other ranks first, then raised
            error = err
    status = torch.tensor([0 if error is None else 1], dtype=torch.int64)
    broadcast_(world, [status], what=f"waiting for rank 0 ({what})")
    if error is not None:
        raise error
    if int(status[0]):
        raise DistributedError(f"rank {world.rank} of {world.world_size}: {what} failed on rank 0; see its log")
    return result
