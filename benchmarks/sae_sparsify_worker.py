"""Train EleutherAI sparsify's TopK SAE on .npy activations (run with sparsify's own Python).

sparsify's ``Trainer`` only trains on a Hugging Face model's hidden states, so this script
replicates its training step on raw activations (sparsify 1.3.3, ``trainer.py``, loss ``fvu``,
default optimizer ``signum``): b_dec = mean of the first batch; per step: decoder rows to unit
norm, ``SparseCoder.forward`` (FusedEncoder + embedding_bag decoder), FVU backward, remove the
gradient parallel to decoder rows, ScheduleFreeWrapper(SignSGD, momentum 0.95) step with
lr = 5e-3 / sqrt(latents / 2**14); AuxK off (its default, ``auxk_alpha = 0``); dead-latent
bookkeeping in tokens as in its trainer. After training the schedule-free averaged weights are
evaluated (``optimizer.eval()``), as sparsify does before saving. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--valid", required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--latents", type=int, default=2048)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import sparsify
    from schedulefree import ScheduleFreeWrapper
    from sparsify import SparseCoder, SparseCoderConfig
    from sparsify.sign_sgd import SignSGD

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    xt = torch.from_numpy(np.load(args.train, allow_pickle=False))
    valid = np.load(args.valid, allow_pickle=False)
    n, d = xt.shape
    sae = SparseCoder(d, SparseCoderConfig(num_latents=args.latents, k=args.k), device="cpu")
    lr = 5e-3 / (sae.num_latents / 2**14) ** 0.5
    opt = ScheduleFreeWrapper(SignSGD([{"params": sae.parameters(), "lr": lr}]), momentum=0.95)
    opt.train()
    since_fired = torch.zeros(sae.num_latents, dtype=torch.long)
    threshold = 10_000_000

    done = 0
    epoch = 0
    t0, c0 = time.perf_counter(), time.process_time()
    while done < args.rows:
        perm = torch.from_numpy(np.random.default_rng([args.seed, epoch]).permutation(n))
        for s in range(0, n, args.batch_size):
            if done >= args.rows:
                break
            x = xt.index_select(0, perm[s : min(s + args.batch_size, n, s + args.rows - done)])
            if done == 0:
                sae.b_dec.data = x.mean(0)
            sae.set_decoder_norm_to_unit_norm()
            out = sae(x, dead_mask=None)
            out.fvu.backward()
            sae.remove_gradient_parallel_to_decoder_directions()
            opt.step()
            opt.zero_grad()
            with torch.no_grad():
                fired = torch.zeros(sae.num_latents, dtype=torch.bool)
                fired[out.latent_indices.flatten()] = True
                since_fired += x.shape[0]
                since_fired[fired] = 0
            done += x.shape[0]
        epoch += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    opt.eval()

    with torch.no_grad():
        sse = 0.0
        xv = torch.from_numpy(np.ascontiguousarray(valid)).double()
        mu = xv.mean(0)
        tv = float((xv - mu).pow(2).sum())
        counts = torch.zeros(sae.num_latents, dtype=torch.long)
        nnz = 0
        for s in range(0, xv.shape[0], 16384):
            xb = xv[s : s + 16384].float()
            enc = sae.encode(xb)
            x_hat = sae.decode(enc.top_acts, enc.top_indices)
            sse += float((xb.double() - x_hat.double()).pow(2).sum())
            active = enc.top_acts > 0
            counts += torch.bincount(enc.top_indices[active], minlength=sae.num_latents)
            nnz += int(active.sum())
    print(json.dumps({
        "impl": "sparsify",
        "version": sparsify.__version__ if hasattr(sparsify, "__version__") else "1.3.3",
        "torch": torch.__version__,
        "rows": done,
        "wall_s": wall,
        "cpu_s": cpu,
        "rows_per_s": done / wall,
        "rows_per_cpu_s": done / cpu,
        "valid_fvu": sse / tv,
        "silent_fraction": float((counts == 0).double().mean()),
        "l0": nnz / xv.shape[0],
        "train_dead_fraction": float((since_fired > threshold).double().mean()),
        "lr": lr,
        "optimizer": "ScheduleFreeWrapper(SignSGD, momentum=0.95)",
    }))


if __name__ == "__main__":
    main()
