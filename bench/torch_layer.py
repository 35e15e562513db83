#!/usr/bin/env python3
"""The decoder layer of `qvlm bench layer` in PyTorch on the CPU, for the speed ratio of
bench/README.md: InternLM2-7B dimensions (hidden 4096, 32 heads, 8 KV heads, head_dim 128, MLP
14336), random weights, batch 8 x 512 tokens, prefill (no KV cache), f32 and bf16.

Same math as src/llm (InternLM2DecoderLayer): RMSNorm (f32 normalisation), packed wqkv in the
grouped layout, rotate-half RoPE (theta 1e6), causal GQA attention, wo, residual, RMSNorm,
w2(silu(w1 x) * w3 x), residual. Attention is torch's scaled_dot_product_attention (the fast
CPU path) unless --eager-attn asks for the reference's explicit softmax.

usage: python3 bench/torch_layer.py [--dtype f32|bf16|both] [--batch 8] [--seq 512]
                                    [--iters 3] [--threads N] [--eager-attn] [--json]
Prints one line per dtype: tokens/s of the best timed run (after one warm-up).
"""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F


def rmsnorm(x, w, eps):
    xf = x.float()
    v = xf.pow(2).mean(-1, keepdim=True)
    return w * (xf * torch.rsqrt(v + eps)).to(x.dtype)


def rope_tables(L, d, theta, dtype):
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    ang = torch.arange(L, dtype=torch.float32)[:, None] * inv[None, :]
    emb = torch.cat([ang, ang], -1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


class Layer:
    def __init__(self, C, H, KV, I, dtype, seed=0):
        g = torch.Generator().manual_seed(seed)
        d = C // H

        def lin(o, i):
            return (torch.rand(o, i, generator=g) * 2 - 1).mul_(1 / math.sqrt(i)).to(dtype)

        self.C, self.H, self.KV, self.d, self.I = C, H, KV, d, I
        self.wqkv, self.wo = lin((H + 2 * KV) * d, C), lin(C, H * d)
        self.w1, self.w3, self.w2 = lin(I, C), lin(I, C), lin(C, I)
        self.n1 = torch.ones(C, dtype=dtype)
        self.n2 = torch.ones(C, dtype=dtype)
        self.eps = 1e-5

    def __call__(self, x, cos, sin, eager=False):
        B, L, C = x.shape
        H, KV, d = self.H, self.KV, self.d
        grp = H // KV
        h = rmsnorm(x, self.n1, self.eps)
        qkv = F.linear(h, self.wqkv).view(B, L, KV, grp + 2, d)
        q = qkv[..., :grp, :].reshape(B, L, H, d).transpose(1, 2)
        k = qkv[..., grp, :].transpose(1, 2)
        v = qkv[..., grp + 1, :].transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(grp, dim=1)
        v = v.repeat_interleave(grp, dim=1)
        if eager:
            s = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(d)
            mask = torch.full((L, L), torch.finfo(s.dtype).min, dtype=s.dtype).triu(1)
            p = torch.softmax(s + mask, dim=-1, dtype=torch.float32).to(q.dtype)
            a = torch.matmul(p, v)
        else:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + F.linear(a.transpose(1, 2).reshape(B, L, H * d), self.wo)
        h = rmsnorm(x, self.n2, self.eps)
        return x + F.linear(F.silu(F.linear(h, self.w1)) * F.linear(h, self.w3), self.w2)


def run(dtype_name, a):
    dtype = torch.float32 if dtype_name == "f32" else torch.bfloat16
    layer = Layer(a.hidden, a.heads, a.kv_heads, a.mlp, dtype)
    x = (torch.rand(a.batch, a.seq, a.hidden, generator=torch.Generator().manual_seed(7)) * 2 - 1).to(dtype)
    cos, sin = rope_tables(a.seq, a.hidden // a.heads, 1e6, dtype)
    best = float("inf")
    with torch.inference_mode():
        for it in range(a.iters + 1):
            t0 = time.perf_counter()
            layer(x, cos, sin, a.eager_attn)
            t = time.perf_counter() - t0
            if it > 0:
                best = min(best, t)
    T = a.batch * a.seq
    d = a.hidden // a.heads
    flops = 2 * T * ((a.heads + 2 * a.kv_heads) * d * a.hidden + a.hidden * a.heads * d + 3 * a.mlp * a.hidden)
    flops += 4 * a.batch * a.heads * d * a.seq * (a.seq + 1) / 2
    return {"bench": "torch_layer", "dtype": dtype_name, "batch": a.batch, "seq": a.seq, "tokens": T,
            "threads": torch.get_num_threads(), "torch": torch.__version__, "eager_attn": a.eager_attn,
            "layer_seconds": best, "tokens_per_s": T / best, "layer_gflops": flops / best * 1e-9}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dtype", default="both", choices=["f32", "bf16", "both"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--mlp", type=int, default=14336)
    p.add_argument("--eager-attn", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    for dt in (["f32", "bf16"] if a.dtype == "both" else [a.dtype]):
        r = run(dt, a)
        if a.json:
            print(json.dumps(r))
        else:
            print(f"torch layer {dt}: batch {a.batch} x seq {a.seq}, {r['threads']} threads: "
                  f"{r['layer_seconds']:.3f} s, {r['tokens_per_s']:.1f} tokens/s, {r['layer_gflops']:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
