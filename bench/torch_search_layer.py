#!/usr/bin/env python3
"""torch_search_layer.py — the PyTorch twin of `qvlm bench search-layer`: one decoder layer's MBQ
W3g128 scale search in PyTorch on the CPU, bf16, as the reference runs it
(thu-nics/MBQ qmllm/methods/mbq/quantize/auto_scale.py `_search_module_scale`, ALGORITHMS.md §3.2,
§5.5), on a synthetic InternLM2 layer at InternVL2-8B dimensions (hidden 4096, 32 heads of 128,
8 KV heads, MLP 14336; wqkv in the grouped layout, RoPE theta 1e6, eager attention as the
reference's InternVL2 loader uses without flash-attn), samples x tokens inputs (128 x 400).

Per group (attention: wqkv inspected through RoPE, GQA attention and wo; MLP: w1, w3 inspected
through w2; down: w2): the reference output, the activation statistic, a copy of the module's
state, then per grid point: the scale, W <- FQ(W * s) / s for the group's linears, the module
re-run, the reweighted MAE loss over the caption and vision masks, the state restored. The same
weights, masks and loss as the C bench (vision = first 64 % of each sample, caption from 68 %).

To keep a full-size run near a minute or two, only --points grid points per group are timed
(default 3); each group's time is extrapolated as reference + grid x (mean time per point), and
the output says so (--points 20 runs all). TFLOP are counted as the C bench counts them (the
inspect module's matmuls, attention as two dense L x L x d products per head, x (grid + 1)).
Prints one line per group and one for the layer (or one JSON object with --json).

    python3 bench/torch_search_layer.py --threads 16            # 128 x 400, InternVL2-8B dims
    python3 bench/torch_search_layer.py --dims tiny --samples 2 --tokens 64 --points 20
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

DIMS = {"internvl2-8b": (4096, 32, 8, 128, 14336), "tiny": (128, 4, 2, 32, 256)}


def pseudo_quantize_tensor(t, n_bits=3, zero_point=True, q_group_size=128):
    """qmllm/quantization/quant_funcs.py, the weight-only path (asymmetric, per group)."""
    shape = t.shape
    if q_group_size > 0:
        t = t.reshape(-1, q_group_size)
    if zero_point:
        max_val = t.amax(dim=1, keepdim=True)
        min_val = t.amin(dim=1, keepdim=True)
        max_int = 2**n_bits - 1
        min_int = 0
        scales = (max_val - min_val).clamp(min=1e-5) / max_int
        zeros = (-torch.round(min_val / scales)).clamp_(min_int, max_int)
    else:
        max_val = t.abs().amax(dim=1, keepdim=True).clamp(min=1e-5)
        max_int = 2 ** (n_bits - 1) - 1
        min_int = -(2 ** (n_bits - 1))
        scales = max_val / max_int
        zeros = 0
    t = (torch.clamp(torch.round(t / scales) + zeros, min_int, max_int) - zeros) * scales
    return t.reshape(shape)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(torch.nn.Module):
    """InternLM2Attention (eager): wqkv rows grouped per KV head as [q x g, k, v], RoPE, GQA."""

    def __init__(self, C, H, KV, d, dtype, attn):
        super().__init__()
        self.H, self.KV, self.d, self.attn = H, KV, d, attn
        self.wqkv = torch.nn.Linear(C, (H + 2 * KV) * d, bias=False, dtype=dtype)
        self.wo = torch.nn.Linear(H * d, C, bias=False, dtype=dtype)

    def forward(self, x, cos, sin, mask):
        B, L, _ = x.shape
        g = self.H // self.KV
        qkv = self.wqkv(x).view(B, L, self.KV, g + 2, self.d)
        q = qkv[..., :g, :].reshape(B, L, self.H, self.d).transpose(1, 2)
        k = qkv[..., g, :].transpose(1, 2)
        v = qkv[..., g + 1, :].transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
        if self.attn == "sdpa":
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.d) + mask
            w = torch.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
            o = torch.matmul(w, v)
        return self.wo(o.transpose(1, 2).reshape(B, L, self.H * self.d))


class MLP(torch.nn.Module):
    def __init__(self, C, I, dtype):
        super().__init__()
        self.w1 = torch.nn.Linear(C, I, bias=False, dtype=dtype)
        self.w3 = torch.nn.Linear(C, I, bias=False, dtype=dtype)
        self.w2 = torch.nn.Linear(I, C, bias=False, dtype=dtype)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def search_group(block, fcs, x, kwargs, ans_mask, vis_mask, ratio, grid, points):
    """_search_module_scale with the reweighted MAE loss; times the reference part and each point."""
    t0 = time.perf_counter()
    with torch.no_grad():
        org_out = block(x, **kwargs)
        x_max = x.abs().view(-1, x.shape[-1]).mean(0)
        # the reference saves the state with .cpu(), a no-op on the CPU: clone, as its GPU run has a copy
        org_sd = {k: v.clone() for k, v in block.state_dict().items()}
    t_ref = time.perf_counter() - t0
    t_points, history = [], []
    ans = ans_mask.unsqueeze(-1).expand_as(org_out)
    vis = vis_mask.unsqueeze(-1).expand_as(org_out)
    with torch.no_grad():
        for i in range(points):
            t1 = time.perf_counter()
            r = i / grid
            scales = x_max.pow(r).clamp(min=1e-4).view(-1)
            scales = scales / (scales.max() * scales.min()).sqrt()
            for fc in fcs:
                fc.weight.mul_(scales.view(1, -1))
                fc.weight.data = pseudo_quantize_tensor(fc.weight.data) / scales.view(1, -1)
            out = block(x, **kwargs)
            diff = (org_out - out).float().abs()
            loss = ((diff * ans).sum() + ratio * (diff * vis).sum()) / (ans.sum() + vis.sum())
            history.append(loss.item())
            block.load_state_dict(org_sd)
            t_points.append(time.perf_counter() - t1)
    return t_ref, t_points, history


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=400)
    ap.add_argument("--dims", choices=sorted(DIMS), default="internvl2-8b")
    ap.add_argument("--groups", default="attn,mlp,down")
    ap.add_argument("--grid", type=int, default=20)
    ap.add_argument("--points", type=int, default=3, help="grid points timed per group (extrapolated to --grid)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    ap.add_argument("--attn", choices=["eager", "sdpa"], default="eager")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.tokens < 4 or a.samples < 1 or not 1 <= a.points <= a.grid:
        sys.exit("torch_search_layer.py: need --tokens >= 4, --samples >= 1, 1 <= --points <= --grid")
    torch.manual_seed(0)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dt = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    C, H, KV, d, I = DIMS[a.dims]
    n, L = a.samples, a.tokens
    T = n * L

    attn = Attention(C, H, KV, d, dt, a.attn)
    mlp = MLP(C, I, dt)
    with torch.no_grad():
        for lin in (attn.wqkv, attn.wo, mlp.w1, mlp.w3, mlp.w2):
            lin.weight.copy_(torch.randn(lin.weight.shape) / math.sqrt(lin.weight.shape[1]))
        x = torch.randn(n, L, C).to(dt)
        xd = torch.randn(n, L, I).mul_(0.25).to(dt) if "down" in a.groups else None
        inv = 1.0 / (1e6 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        fr = torch.outer(torch.arange(L, dtype=torch.float32), inv)
        emb = torch.cat((fr, fr), dim=-1)
        cos, sin = emb.cos().to(dt)[None, None], emb.sin().to(dt)[None, None]
        mask = torch.full((L, L), torch.finfo(dt).min, dtype=dt).triu(1)[None, None]
    p = torch.arange(L)
    vis_mask = (p * 25 < L * 16).expand(n, L).to(dt)
    ans_mask = (p * 25 >= L * 17).expand(n, L).to(dt)

    groups = []
    if "attn" in a.groups:
        fl = 2 * T * C * (H + 2 * KV) * d + 2 * T * H * d * C + 4.0 * n * L * L * H * d
        groups.append(("attn", attn, [attn.wqkv], x, {"cos": cos, "sin": sin, "mask": mask}, fl))
    if "mlp" in a.groups:
        groups.append(("mlp", mlp, [mlp.w1, mlp.w3], x, {}, 3 * 2.0 * T * C * I))
    if "down" in a.groups:
        groups.append(("down", mlp.w2, [mlp.w2], xd, {}, 2.0 * T * I * C))
    if not groups:
        sys.exit("torch_search_layer.py: --groups takes attn, mlp, down")

    extrap = a.points < a.grid
    if not a.json:
        print(f"# torch_search_layer.py: torch {torch.__version__}, {torch.get_num_threads()} threads, {a.dims} dims, "
              f"{n} samples x {L} tokens = {T} rows, MBQ W3g128 reweighted MAE, {a.grid} grid points"
              + (f" (extrapolated from {a.points} timed per group)" if extrap else "")
              + f", {a.dtype}, {a.attn} attention", flush=True)
    res, total_s, total_tf = [], 0.0, 0.0
    for name, block, fcs, inp, kw, fl in groups:
        t_ref, t_pts, hist = search_group(block, fcs, inp, kw, ans_mask, vis_mask, 1.0, a.grid, a.points)
        secs = t_ref + a.grid * (sum(t_pts) / len(t_pts))
        tf = fl * (a.grid + 1) / 1e12
        total_s += secs
        total_tf += tf
        res.append({"name": name, "seconds_reference": t_ref, "seconds_per_point": sum(t_pts) / len(t_pts),
                    "seconds": secs, "tflop": tf, "losses": hist})
        if not a.json:
            print(f"group {name:4s}: reference {t_ref:7.2f} s, {sum(t_pts) / len(t_pts):7.2f} s per point "
                  f"({len(t_pts)} timed) -> {secs:8.2f} s for {a.grid}; {tf:.4g} TFLOP, {tf / secs:.4g} TFLOPS",
                  flush=True)
    if a.json:
        print(json.dumps({"bench": "torch-search-layer", "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "dims": a.dims, "samples": n, "tokens": L, "grid": a.grid, "points": a.points,
                          "dtype": a.dtype, "attn": a.attn, "groups": res, "seconds_per_layer": total_s,
                          "tflop": total_tf, "tflops": total_tf / total_s, "extrapolated": extrap}))
    else:
        print(f"layer: {total_s:.2f} s per layer{' (extrapolated)' if extrap else ''}, {total_tf:.4g} TFLOP, "
              f"{total_tf / total_s:.4g} TFLOPS sustained")


if __name__ == "__main__":
    main()
