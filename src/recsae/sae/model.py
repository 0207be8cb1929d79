"""TopK sparse autoencoder with AuxK (docs/method.md §2; Gao et al. 2024).

```
a     = ReLU(W_enc (x - b_dec) + b_enc)       W_enc: m x d
z     = TopK_k(a)
x_hat = W_dec^T z + b_dec                     W_dec: m x d, unit-norm rows
```

An optional per-latent ``selection_bias`` (a buffer, zero unless trained with
``SaeTrainConfig.balance_rate``) shifts which latents TopK selects without changing their values:
z keeps a at the k largest entries of a + selection_bias. It evens out latent usage (the
auxiliary-loss-free load balancing of mixture-of-experts routers, DeepSeek-V3).

Speed: only the encoder matmul touches all m latents. The encoder's backward and the decoder
work on the k selected latents only (gather / ``embedding_bag`` / ``index_add``), so their cost
scales with k, not with m.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recsae.errors import DataError
from recsae.io import (
    FORMAT_VERSION,
    check_format_version,
    read_json,
    read_tensors,
    write_json,
    write_tensors,
)
from recsae.sae.config import SaeConfig

Reduce = Callable[[Tensor], Tensor]
"""Sums a tensor over the ranks of a distributed training (``recsae.distributed.all_reduce``)."""

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"


class EncoderOutput(NamedTuple):
    """The k largest activations of each row (after ReLU, so some may be 0) and their latents."""

    top_acts: Tensor
    """B x k activations."""
    top_indices: Tensor
    """B x k latent indices (int64)."""


class ForwardOutput(NamedTuple):
    """Reconstruction and losses of one batch."""

    x_hat: Tensor
    """B x d reconstruction."""
    top_acts: Tensor
    """B x k activations."""
    top_indices: Tensor
    """B x k latent indices."""
    fvu: Tensor
    """Training loss: Σ‖x − x̂‖² / Σ‖x − x̄‖² with x̄ the mean of this batch (distributed: this
    rank's share, its Σ‖x − x̂‖² over the whole batch's denominator). For the reported metric
    (mean of the whole evaluation set) use ``recsae.sae.metrics.evaluate_sae``."""
    auxk_loss: Tensor
    """AuxK loss Σ‖e − ê‖² / Σ‖e‖² (0 when no latent is dead or no ``dead_mask`` is given)."""


def topk_rows(pre: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k largest entries of each row of ``pre`` (any order), exactly as ``torch.topk``.

    On CPU, for wide rows, ``torch.topk`` costs ~5 ns per entry. Here a threshold τ per row is
    first taken as the k-th largest of the maxima of g strided groups of columns: the k groups
    with the largest maxima hold k distinct entries ≥ τ, so the row's top-k all lie in
    {pre ≥ τ}, a set only slightly larger than k. ``torch.topk`` then runs on those
    candidates alone."""
    b, m = pre.shape
    g = 4 * k
    if pre.device.type != "cpu" or m % g or m // g < 4 or m % 8 or not pre.is_contiguous() or b == 0:
        return pre.topk(k, dim=1, sorted=False)
    tau = pre.view(b, m // g, g).amax(1).topk(k, dim=1, sorted=False).values.amin(1, keepdim=True)
    mask = pre >= tau
    # Non-zero positions of the mask, found 8 bytes at a time first.
    words = mask.view(-1).view(torch.int64).nonzero().squeeze(1)
    wi, bi = mask.view(-1, 8).index_select(0, words).nonzero(as_tuple=True)
    pos = words[wi] * 8 + bi
    if pos.numel() == 0:  # only NaNs: let torch.topk decide
        return pre.topk(k, dim=1, sorted=False)
    row = pos.div(m, rounding_mode="floor")
    counts = torch.bincount(row, minlength=b)
    width = int(counts.max())
    start = counts.cumsum(0) - counts
    dst = row * width + (torch.arange(pos.numel(), device=pre.device) - start[row])
    cand = pre.new_full((b * width,), -torch.inf).index_copy_(0, dst, pre.view(-1).index_select(0, pos))
    cols = torch.zeros(b * width, dtype=torch.int64, device=pre.device).index_copy_(0, dst, pos - row * m)
    vals, j = cand.view(b, width).topk(k, dim=1, sorted=False)
    return vals, cols.view(b, width).gather(1, j)


def _key_order(keys: Tensor, n_keys: int) -> Tensor:
    """``keys.argsort()``, faster on CPU: from 2**15 keys on, torch's default sort is stable
    (a radix sort), and sorting the keys as the narrowest integer type that holds them gives the
    same permutation 2-3x faster. Shorter arrays keep the default sort (it is not stable there,
    so another one would reorder equal keys and change the sums built on the order)."""
    if keys.device.type != "cpu" or keys.numel() < 2**15 or n_keys > 2**31:
        return keys.argsort()
    return keys.to(torch.int16 if n_keys <= 2**15 else torch.int32).argsort(stable=True)


def scatter_rows(indices: Tensor, values: Tensor, rhs: Tensor, n_out: int) -> Tensor:
    """out[l] = Σ_{(b, j): indices[b, j] = l} values[b, j] · rhs[b]  (n_out x d).

    The transpose of a sparse (B x n_out) matrix times ``rhs``, as a CSR product: cost ∝ B·j·d
    without materialising the B x j x d contributions (``index_add_`` on CPU is ~10x slower)."""
    b, j = indices.shape
    flat = indices.reshape(-1)
    order = _key_order(flat, n_out)
    crow = torch.zeros(n_out + 1, dtype=torch.int64, device=flat.device)
    crow[1:] = torch.bincount(flat, minlength=n_out).cumsum(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        s = torch.sparse_csr_tensor(
            crow, order.div(j, rounding_mode="floor"), values.reshape(-1)[order], size=(n_out, b)
        )
        return s @ rhs


def gather_dot(indices: Tensor, weight: Tensor, rhs: Tensor) -> Tensor:
    """out[b, j] = ⟨weight[indices[b, j]], rhs[b]⟩  (B x j), the sampled product rhs · weightᵀ."""
    b, j = indices.shape
    if rhs.device.type != "cpu":
        return torch.bmm(weight[indices], rhs.unsqueeze(2)).squeeze(2)
    crow = torch.arange(0, b * j + 1, j, device=rhs.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pattern = torch.sparse_csr_tensor(crow, indices.reshape(-1), rhs.new_zeros(b * j), size=(b, weight.shape[0]))
        return torch.sparse.sampled_addmm(pattern, rhs, weight.t(), beta=0.0).values().view(b, j)


class _SparseEncode(torch.autograd.Function):
    """Encoder + TopK (+ the AuxK selection among dead latents) whose backward touches only the
    selected latents: the gradient of W_enc / b_enc is non-zero only in the selected rows."""

    @staticmethod
    def forward(
        ctx: Any,
        xc: Tensor,
        W_enc: Tensor,
        b_enc: Tensor,
        k: int,
        dead_idx: Tensor | None,
        k_aux: int,
        selection_bias: Tensor | None,
        aux_relu: bool = True,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        pre = torch.addmm(b_enc, xc, W_enc.t())
        # TopK of the pre-activations then ReLU = TopK of ReLU(pre) (ReLU is monotone); cheaper.
        if selection_bias is None:
            vals, idx = topk_rows(pre, k)
        else:
            idx = topk_rows(pre + selection_bias, k)[1]
            vals = pre.gather(1, idx)
        vals = vals.relu_()
        if dead_idx is not None and dead_idx.numel() > 0 and k_aux > 0:
            kk = min(k_aux, dead_idx.numel())
            a_vals, a_local = pre.index_select(1, dead_idx).topk(kk, dim=1, sorted=False)
            if aux_relu:
                a_vals = a_vals.relu_()
            a_idx = dead_idx[a_local]
        else:
            a_vals = xc.new_zeros(xc.shape[0], 0)
            a_idx = idx.new_zeros(xc.shape[0], 0)
        ctx.aux_relu = aux_relu
        ctx.save_for_backward(xc, W_enc, vals, idx, a_vals, a_idx)
        ctx.mark_non_differentiable(idx, a_idx)
        return vals, idx, a_vals, a_idx

    @staticmethod
    def backward(
        ctx: Any, g_vals: Tensor | None, _gi: Any, g_aux: Tensor | None, _ga: Any
    ) -> tuple[Tensor | None, ...]:
        xc, W_enc, vals, idx, a_vals, a_idx = ctx.saved_tensors
        if g_vals is None:
            g_vals = torch.zeros_like(vals)
        g = g_vals * (vals > 0)  # ReLU gate
        sel = idx
        if a_idx.shape[1] > 0 and g_aux is not None:
            g = torch.cat([g, g_aux * (a_vals > 0) if ctx.aux_relu else g_aux], dim=1)
            sel = torch.cat([idx, a_idx], dim=1)
        grad_xc = grad_W = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_xc = F.embedding_bag(sel, W_enc, per_sample_weights=g, mode="sum")
        if ctx.needs_input_grad[1]:
            grad_W = scatter_rows(sel, g, xc, W_enc.shape[0])
        if ctx.needs_input_grad[2]:
            grad_b = W_enc.new_zeros(W_enc.shape[0]).index_add_(0, sel.reshape(-1), g.reshape(-1))
        return grad_xc, grad_W, grad_b, None, None, None, None, None


class _SparseDecode(torch.autograd.Function):
    """W_decᵀ z for a sparse z given as (acts, indices): cost ∝ k in both directions."""

    @staticmethod
    def forward(ctx: Any, acts: Tensor, indices: Tensor, W_dec: Tensor) -> Tensor:
        ctx.save_for_backward(acts, indices, W_dec)
        return F.embedding_bag(indices, W_dec, per_sample_weights=acts, mode="sum")

    @staticmethod
    def backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, ...]:
        acts, indices, W_dec = ctx.saved_tensors
        gy = gy.contiguous()
        g_acts = gather_dot(indices, W_dec, gy) if ctx.needs_input_grad[0] else None
        g_w = scatter_rows(indices, acts, gy, W_dec.shape[0]) if ctx.needs_input_grad[2] else None
        return g_acts, None, g_w


class TopKSAE(nn.Module):
    """TopK sparse autoencoder. Parameters ``W_enc`` (m x d), ``b_enc`` (m), ``W_dec`` (m x d),
    ``b_dec`` (d). Initialisation: unit-norm random decoder rows, tied encoder (W_enc = W_dec,
    i.e. W_dec = W_encᵀ in the math), b_enc = 0, b_dec = 0 until ``init_b_dec_from_data``.
    Buffer ``selection_bias`` (m) starts at 0 and is only changed by a balancing trainer."""

    def __init__(self, cfg: SaeConfig, seed: int = 0, device: str | torch.device | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(cfg.m, cfg.d_in, generator=g)
        w /= w.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.W_enc = nn.Parameter(w.clone())
        self.b_enc = nn.Parameter(torch.zeros(cfg.m))
        self.W_dec = nn.Parameter(w)
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        self.selection_bias: Tensor
        self.register_buffer("selection_bias", torch.zeros(cfg.m))
        if device is not None:
            self.to(device)

    # -- constructors ----------------------------------------------------------------------
    @classmethod
    def random_like(
        cls,
        cfg: SaeConfig,
        seed: int = 0,
        b_dec: Tensor | None = None,
        device: str | torch.device | None = None,
        x_sample: Tensor | None = None,
    ) -> TopKSAE:
        """An untrained SAE of shape ``cfg``: the random-SAE baseline of the splice evaluation.
        Tied, unit-norm init; ``b_dec`` zero or the given vector (e.g. the data mean). With
        ``x_sample``, exactly as ``train_sae`` starts (default config): ``b_dec`` = its mean
        unless given, and the encoder scaled to it (``scale_encoder_to_data``)."""
        sae = cls(cfg, seed=seed, device=device)
        with torch.no_grad():
            if b_dec is not None:
                sae.b_dec.copy_(b_dec.to(sae.b_dec))
            elif x_sample is not None:
                sae.init_b_dec_from_data(x_sample)
            if x_sample is not None:
                sae.scale_encoder_to_data(x_sample)
        return sae

    @torch.no_grad()
    def init_b_dec_from_data(self, x_sample: Tensor, method: str = "mean") -> None:
        """Set ``b_dec`` to the mean (default) or the geometric median of ``x_sample`` (n x d)."""
        x = torch.as_tensor(x_sample).to(self.b_dec.device, torch.float32)
        if x.ndim != 2 or x.shape[1] != self.cfg.d_in or x.shape[0] == 0:
            raise DataError(f"b_dec init: expected a non-empty (n x {self.cfg.d_in}) sample, got {tuple(x.shape)}")
        self.b_dec.copy_(geometric_median(x) if method == "median" else x.mean(0))

    @torch.no_grad()
    def scale_encoder_to_data(self, x_sample: Tensor) -> float:
        """Multiply W_enc by the least-squares scale c = ⟨x − b_dec, y⟩ / ‖y‖² (y = W_decᵀ z on
        ``x_sample``) so that the first reconstructions have the data's scale. With b_enc = 0
        the TopK selection is unchanged; only the activations shrink or grow. The tied init's
        directions are kept (W_enc = c · W_dec); without it a unit-norm tied encoder overshoots
        (initial FVU ≫ 1 on real activations) and Adam spends hundreds of steps shrinking it.
        Returns c (1.0 when it would not be a finite positive number)."""
        x = torch.as_tensor(x_sample).to(self.b_dec.device, torch.float32)
        acts, idx = self.encode(x)
        y = self.decode_residual(acts, idx)
        c = float((y * (x - self.b_dec)).sum() / y.pow(2).sum().clamp_min(1e-12))
        if not (c > 0 and c < float("inf")):
            return 1.0
        self.W_enc.mul_(c)
        return c

    # -- the model ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.W_enc.device

    def encode(self, x: Tensor) -> EncoderOutput:
        """The k largest activations per row (exactly k non-zeros when ≥ k are positive)."""
        vals, idx, _, _ = _SparseEncode.apply(
            x - self.b_dec, self.W_enc, self.b_enc, self.cfg.k, None, 0, self._selection_bias()
        )
        return EncoderOutput(vals, idx)

    def decode(self, top_acts: Tensor, top_indices: Tensor) -> Tensor:
        """x̂ = W_decᵀ z + b_dec from the sparse code (cost ∝ k)."""
        return self.decode_residual(top_acts, top_indices) + self.b_dec

    def decode_residual(self, acts: Tensor, indices: Tensor) -> Tensor:
        """W_decᵀ z without b_dec (the AuxK reconstruction of the residual uses this)."""
        return _SparseDecode.apply(acts, indices, self.W_dec)

    def dense_latents(self, x: Tensor) -> Tensor:
        """z as a dense B x m matrix: the top-k activations, zeros elsewhere."""
        acts, idx = self.encode(x)
        return acts.new_zeros(x.shape[0], self.cfg.m).scatter_(1, idx, acts)

    def forward(self, x: Tensor, dead_mask: Tensor | None = None, reduce: Reduce | None = None) -> ForwardOutput:
        """Reconstruct ``x`` (B x d). With ``dead_mask`` (bool, m), also the AuxK loss: the
        residual e = x − x̂ (detached) is reconstructed from the ``k_aux`` largest
        pre-activations among dead latents, without b_dec: L_aux = Σ‖e − ê‖² / Σ‖e‖².

        ``reduce`` (distributed training): sums a tensor over the ranks that each hold a slice
        of the batch. The losses' denominators (Σ‖x − x̄‖², Σ‖e‖²) are then those of the whole
        batch, so each rank's losses are its share and the ranks' shares add up to the losses
        (and gradients) of the batch in one process."""
        cfg = self.cfg
        dead_idx = None
        if dead_mask is not None and cfg.aux_alpha > 0:
            dead_idx = dead_mask.nonzero().squeeze(1)
        vals, idx, a_vals, a_idx = _SparseEncode.apply(
            x - self.b_dec, self.W_enc, self.b_enc, cfg.k, dead_idx, cfg.k_aux, self._selection_bias(), cfg.aux_relu
        )
        x_hat = self.decode(vals, idx)
        err = x - x_hat
        total_var = (x - x.mean(0)).pow(2).sum() if reduce is None else self._batch_variance(x, reduce)
        fvu = err.pow(2).sum() / total_var.clamp_min(1e-12)
        if a_idx.shape[1] > 0:
            e = err.detach()
            e_hat = self.decode_residual(a_vals, a_idx)
            e_norm = e.pow(2).sum() if reduce is None else reduce(e.pow(2).sum())
            auxk = (e - e_hat).pow(2).sum() / e_norm.clamp_min(1e-12)
        else:
            auxk = fvu.new_zeros(())
        return ForwardOutput(x_hat, vals, idx, fvu, auxk)

    @torch.no_grad()
    def _batch_variance(self, x: Tensor, reduce: Reduce) -> Tensor:
        """Σ‖x − x̄‖² over the rows of every rank, x̄ their mean: from sums about b_dec (near the
        data's mean, so that little cancels), in float64, one reduction."""
        xc = x.double() - self.b_dec.double()
        sums = reduce(torch.cat([xc.sum(0), xc.pow(2).sum().view(1), xc.new_tensor([x.shape[0]])]))
        n = sums[-1].clamp_min(1.0)
        return (sums[-2] - sums[:-2].pow(2).sum() / n).to(x.dtype)

    def _selection_bias(self) -> Tensor | None:
        # None when all zero: selection is then plain TopK, on the fast path.
        return self.selection_bias if bool(self.selection_bias.any()) else None

    @torch.no_grad()
    def balance_step(self, top_indices: Tensor, top_acts: Tensor, rate: float, reduce: Reduce | None = None) -> None:
        """One load-balancing update: raise the selection bias of latents chosen less often than
        the uniform share k/m in this batch, lower it for the others, by ``rate`` times the
        batch's mean selected activation (so the step follows the data's scale). ``reduce``: as
        in ``forward``; the loads and the mean are then those of the whole batch."""
        load = torch.bincount(top_indices.reshape(-1), minlength=self.cfg.m).to(top_acts.dtype)
        if reduce is None:
            mean_act, n = top_acts.mean(), top_indices.numel()
        else:
            sums = reduce(torch.cat([load, top_acts.sum().view(1), load.new_tensor([top_indices.numel()])]).double())
            load, n = sums[:-2].to(load.dtype), int(sums[-1])
            mean_act = (sums[-2] / max(n, 1)).to(top_acts.dtype)
        self.selection_bias += rate * mean_act * torch.sign(n / self.cfg.m - load)

    # -- decoder constraint --------------------------------------------------------------------
    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Project out of W_dec.grad the component parallel to each (unit-norm) decoder row."""
        g = self.W_dec.grad
        if g is None:
            return
        w = self.W_dec
        g -= (g * w).sum(1, keepdim=True) * w / w.pow(2).sum(1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Renormalise decoder rows to unit L2 norm."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path_dir: str | Path, extra: dict[str, Any] | None = None) -> None:
        """Write ``cfg.json`` (with ``format_version``) and ``sae.safetensors`` to ``path_dir``."""
        path_dir = Path(path_dir)
        tensors = {n: t.detach() for n, t in self.state_dict().items()}
        write_tensors(path_dir / WEIGHTS_FILE, tensors, metadata={"format_version": str(FORMAT_VERSION)})
        meta: dict[str, Any] = {"format_version": FORMAT_VERSION, "kind": "topk_sae", "sae": self.cfg.to_dict()}
        if extra:
            meta.update(extra)
        write_json(path_dir / CFG_FILE, meta)

    @classmethod
    def load(cls, path_dir: str | Path, device: str | torch.device | None = None) -> TopKSAE:
        """Load an SAE written by ``save``."""
        path_dir = Path(path_dir)
        cfg_path = path_dir / CFG_FILE
        if not cfg_path.is_file() or not (path_dir / WEIGHTS_FILE).is_file():
            raise DataError(f"not an SAE checkpoint folder (needs {CFG_FILE} and {WEIGHTS_FILE})", path=path_dir)
        meta = read_json(cfg_path)
        check_format_version(meta, cfg_path)
        try:
            cfg = SaeConfig.from_dict(meta["sae"])
        except (KeyError, TypeError, ValueError) as err:  # a value of the wrong type, say
            raise DataError(f"malformed sae config: {err!r}", path=cfg_path, field="sae") from None
        tensors = read_tensors(path_dir / WEIGHTS_FILE)
        # checked before anything of the config's size is allocated: a damaged config could ask for any amount
        m, d = cfg.m, cfg.d_in
        expected = {"W_enc": (m, d), "b_enc": (m,), "W_dec": (m, d), "b_dec": (d,), "selection_bias": (m,)}
        got = {n: tuple(t.shape) for n, t in tensors.items()}
        got.setdefault("selection_bias", (m,))
        if got != expected:
            raise DataError(f"weights {got} do not match the config's shapes {expected}", path=path_dir / WEIGHTS_FILE)
        # Checkpoints written before selection_bias existed load with a zero bias.
        tensors.setdefault("selection_bias", torch.zeros(m))
        sae = cls(cfg)
        sae.load_state_dict(tensors)
        if device is not None:
            sae.to(device)
        return sae


def untrained_baseline(cfg: SaeConfig, x: Any, seed: int, device: torch.device | str | None = None,
                       sample_rows: int = 100_000) -> TopKSAE:
    """The SAE exactly as training starts from it (same seed; b_dec and encoder scale fitted to
    a seeded sample of ``x``, rows x d: an array or a row source), never trained: the random-SAE
    baseline."""
    rows = np.sort(np.random.default_rng(seed).permutation(len(x))[:sample_rows])
    sample = torch.from_numpy(np.asarray(x[rows], dtype=np.float32))
    return TopKSAE.random_like(cfg, seed=seed, device=device, x_sample=sample.to(device))


@torch.no_grad()
def geometric_median(x: Tensor, iters: int = 100, tol: float = 1e-6) -> Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances to the rows."""
    y = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - y).norm(dim=1).clamp_min(1e-8)
        y_new = (w.unsqueeze(1) * x).sum(0) / w.sum()
        if (y_new - y).norm() <= tol * y.norm().clamp_min(1.0):
            return y_new
        y = y_new
    return y
