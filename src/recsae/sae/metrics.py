"""Quality metrics of a sparse autoencoder (docs/method.md §2.9), computed in a streaming way.

FVU = Σ‖x − x̂‖² / Σ‖x − μ‖² with μ the mean of the whole evaluation set: the denominator is
accumulated batch by batch with Chan's parallel-variance merge, so the batch size never changes
the result (a per-batch mean would, and would flatter small batches).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from recsae.distributed import World, all_gather, all_reduce, rank_slice

if TYPE_CHECKING:
    from recsae.sae.model import TopKSAE

DENSE_THRESHOLD = 0.1
"""A latent is dense when it is active on more than this fraction of rows."""
HIST_EDGES = tuple(float(e) for e in np.arange(-7.0, 0.5, 0.5))
"""Bin edges of the log10 activation-frequency histogram (frequency 1 = every row)."""


def fvu(x: Tensor, x_hat: Tensor, mean: Tensor | None = None) -> float:
    """Fraction of variance unexplained Σ‖x − x̂‖² / Σ‖x − μ‖², μ = ``mean`` or the mean of ``x``."""
    x64, xh64 = x.double(), x_hat.double()
    mu = x64.mean(0) if mean is None else mean.double().to(x64.device)
    return float((x64 - xh64).pow(2).sum() / (x64 - mu).pow(2).sum())


def cosine(x: Tensor, x_hat: Tensor) -> float:
    """Mean over rows of cos(x, x̂)."""
    return float(torch.nn.functional.cosine_similarity(x.double(), x_hat.double(), dim=1).mean())


def l0(top_acts: Tensor) -> float:
    """Mean number of non-zero latents per row."""
    return float((top_acts > 0).sum(1).double().mean())


def latent_counts(top_acts: Tensor, top_indices: Tensor, n_latents: int) -> Tensor:
    """Rows on which each latent is active (non-zero), as an int64 vector of length m."""
    active = top_acts > 0
    return torch.bincount(top_indices[active], minlength=n_latents)


def frequency_histogram(freq: np.ndarray) -> dict[str, Any]:
    """Histogram of log10 activation frequency; latents never active are counted apart."""
    freq = np.asarray(freq, dtype=np.float64)
    alive = freq > 0
    log_f = np.log10(freq[alive])
    edges = np.asarray(HIST_EDGES)
    counts, _ = np.histogram(np.clip(log_f, edges[0], edges[-1]), bins=edges)
    return {"log10_edges": edges.tolist(), "counts": counts.tolist(), "never_active": int((~alive).sum())}


class RunningFvu:
    """Streaming FVU with the evaluation set's own mean: Σ‖x − x̂‖² and the centred sum of
    squares Σ‖x − μ‖² (merged per batch, Chan et al.), both in float64."""

    def __init__(self) -> None:
        self.n = 0
        self.sse = 0.0
        self.mean: Tensor | None = None
        self.m2 = 0.0

    def update(self, x: Tensor, x_hat: Tensor) -> None:
        x64 = x.detach().double()
        nb = x64.shape[0]
        if nb == 0:
            return
        sse = float((x64 - x_hat.detach().double()).pow(2).sum())
        mb = x64.mean(0)
        self._merge(nb, sse, mb, float((x64 - mb).pow(2).sum()))

    def _merge(self, nb: int, sse: float, mb: Tensor, m2b: float) -> None:
        """Add a block of ``nb`` rows with error ``sse``, mean ``mb`` and centred sum ``m2b``."""
        if nb == 0:
            return
        self.sse += sse
        if self.mean is None:
            self.n, self.mean, self.m2 = nb, mb, m2b
            return
        n = self.n + nb
        delta = mb - self.mean
        self.m2 += m2b + float(delta.pow(2).sum()) * self.n * nb / n
        self.mean = self.mean + delta * (nb / n)
        self.n = n

    def state(self, d: int, device: torch.device) -> Tensor:
        """[n, sse, m2, mean (d)] as one float64 vector, to gather from every rank."""
        mean = self.mean if self.mean is not None else torch.zeros(d, dtype=torch.float64, device=device)
        return torch.cat([torch.tensor([self.n, self.sse, self.m2], dtype=torch.float64, device=device), mean])

    @classmethod
    def merged(cls, states: list[Tensor]) -> RunningFvu:
        """One running FVU over the blocks whose ``state`` vectors are given, merged in order."""
        run = cls()
        for st in states:
            run._merge(int(st[0]), float(st[1]), st[3:], float(st[2]))
        return run

    def value(self) -> float:
        return self.sse / self.m2 if self.m2 > 0 else float("nan")


@dataclass
class SaeMetrics:
    """Quality of an SAE on a set of rows."""

    n_rows: int
    """Rows evaluated."""
    fvu: float
    """Σ‖x − x̂‖² / Σ‖x − μ‖², μ the mean of these rows."""
    mse: float
    """Mean over rows of ‖x − x̂‖²."""
    cosine: float
    """Mean cos(x, x̂)."""
    l0: float
    """Mean number of active latents per row."""
    dead_fraction: float
    """Latents active on none of these rows ("silent")."""
    dense_fraction: float
    """Latents active on more than 10 % of these rows."""
    freq_histogram: dict[str, Any]
    """log10 activation-frequency histogram (see ``frequency_histogram``)."""
    latent_freq: list[float]
    """Per-latent activation frequency (fraction of rows on which it is active)."""

    def to_dict(self, with_freq: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_freq:
            d.pop("latent_freq")
        return d


def iter_row_batches(x: Any, batch_size: int, device: torch.device) -> Iterator[Tensor]:
    """Batches of rows of a tensor, array or memory map, as float32 tensors on ``device``."""
    n = x.shape[0]
    for s in range(0, n, batch_size):
        chunk = x[s : s + batch_size]
        # a copy: memory-mapped stores are read-only, and torch wants writable arrays
        t = chunk if isinstance(chunk, Tensor) else torch.from_numpy(np.array(chunk, dtype=np.float32))
        yield t.to(device=device, dtype=torch.float32)


@torch.no_grad()
def evaluate_sae(sae: TopKSAE, x: Any, batch_size: int = 16384, world: World | None = None) -> SaeMetrics:
    """FVU, cosine, L0, dead/dense fractions and the frequency histogram of ``sae`` on ``x``
    (rows x d: tensor, array or memory map; streamed in batches). With a distributed ``world``
    (every rank calls it with the same ``sae`` and ``x``), each rank evaluates its block of the
    rows and every rank gets the metrics of all of them."""
    device = sae.device
    m = sae.cfg.m
    run = RunningFvu()
    cos_sum = 0.0
    nnz = 0
    counts = torch.zeros(m, dtype=torch.int64, device=device)
    n = 0
    if world is not None and world.distributed:
        x = x[rank_slice(len(x), world)]
    for xb in iter_row_batches(x, batch_size, device):
        acts, idx = sae.encode(xb)
        x_hat = sae.decode(acts, idx)
        run.update(xb, x_hat)
        cos_sum += float(torch.nn.functional.cosine_similarity(xb.double(), x_hat.double(), dim=1).sum())
        nnz += int((acts > 0).sum())
        counts += latent_counts(acts, idx, m)
        n += xb.shape[0]
    if world is not None and world.distributed:
        counts = all_reduce(world, counts, what="SAE evaluation")
        cos_sum, nnz_f, n_f = all_reduce(world, np.array([cos_sum, nnz, n], dtype=np.float64)).tolist()
        nnz, n = int(nnz_f), int(n_f)
        run = RunningFvu.merged(all_gather(world, run.state(sae.cfg.d_in, device), what="SAE evaluation"))
    if n == 0:
        raise ValueError("evaluate_sae: no rows to evaluate")
    freq = counts.double().cpu().numpy() / n
    return SaeMetrics(
        n_rows=n,
        fvu=run.value(),
        mse=run.sse / n,
        cosine=cos_sum / n,
        l0=nnz / n,
        dead_fraction=float((freq == 0).mean()),
        dense_fraction=float((freq > DENSE_THRESHOLD).mean()),
        freq_histogram=frequency_histogram(freq),
        latent_freq=freq.tolist(),
    )
