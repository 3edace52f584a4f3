"""A PyTorch PoseDual step of the reference's shape, to time beside ours (``train_step.py --methods torch_dual``).

The networks are ``tests/torch_reference.py``'s ResNet-18 SimpleBaseline (the reference architecture);
the step does what the reference's PoseDual step does on a batch (its lib/core/function.py:train with the
PoseDual criterion of lib/core/loss.py; plain PoseDual,
no joint cutout): supervised passes of both nets, train-mode teacher passes without gradient, one
batch affine warp (``affine_grid``/``grid_sample``) of the unlabelled images and of the teacher maps,
hard passes, the weighted joints MSE (0.5 each supervised term, the consistency terms summed), one
backward and one Adam step over both networks.

``precision="none"``: fp32 NCHW, the reference as shipped. ``"mixed_bfloat16"``: PyTorch's best on this
CPU, ``torch.autocast("cpu", torch.bfloat16)`` with channels_last networks and inputs.
"""
from __future__ import annotations

import math
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))


def _weighted_mse(pred, target, weight):
    w = weight[:, :, None, None]
    return 0.5 * ((w * pred.float() - w * target.float()) ** 2).mean()


def _theta(batch: int, scale: float = 0.25, rot: float = 30.0):
    """Per-sample scale/rotation matrices in affine_grid's normalised coordinates."""
    import torch

    s = 1 + torch.clamp(torch.randn(batch) * scale, -scale, scale)
    r = torch.clamp(torch.randn(batch) * rot, -2 * rot, 2 * rot) * math.pi / 180
    cos, sin = torch.cos(r) / s, torch.sin(r) / s
    zero = torch.zeros(batch)
    return torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)


def time_step(batch: int, precision: str, steps: int, threads: int | None = None) -> dict:
    import torch
    import torch.nn.functional as F
    from torch_reference import PoseResNet

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    bf16 = precision == "mixed_bfloat16"
    fmt = torch.channels_last if bf16 else torch.contiguous_format
    nets = [PoseResNet(18).to(memory_format=fmt).train() for _ in range(2)]
    opt = torch.optim.Adam([p for n in nets for p in n.parameters()], lr=1e-3)
    x_l = torch.randn(batch, 3, 256, 192).contiguous(memory_format=fmt)
    x_u = torch.randn(batch, 3, 256, 192).contiguous(memory_format=fmt)
    target = torch.rand(batch, 24, 64, 48)
    weight = torch.ones(batch, 24)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            f1, f2 = nets
            s1, s2 = f1(x_l), f2(x_l)
            with torch.no_grad():
                t1, t2 = f1(x_u), f2(x_u)
                theta = _theta(batch)
                grid = F.affine_grid(theta, list(x_u.shape), align_corners=False)
                view = F.grid_sample(x_u, grid, align_corners=False).contiguous(memory_format=fmt)
                ht_grid = F.affine_grid(theta, list(t1.shape), align_corners=False)
                w1 = F.grid_sample(t1.float(), ht_grid, align_corners=False)
                w2 = F.grid_sample(t2.float(), ht_grid, align_corners=False)
            c1, c2 = f1(view), f2(view)
        loss = (0.5 * _weighted_mse(s1, target, weight) + 0.5 * _weighted_mse(s2, target, weight)
                + _weighted_mse(c1, w2, weight) + _weighted_mse(c2, w1, weight))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    start = time.perf_counter()
    step()
    warm = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"step_times": times, "first_step_s": round(warm, 1), "threads": torch.get_num_threads()}
