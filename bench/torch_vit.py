#!/usr/bin/env python3
"""torch_vit.py — the PyTorch twin of `qvlm bench vit`: InternViT-300M forward tiles/s at its real
dimensions (hidden 1024, 24 layers, 16 heads, MLP 4096, 448x448 tiles, patch 14 -> 1025 tokens),
random weights, on the CPU.

The block is InternVL's InternVisionEncoderLayer as the reference runs it (modeling_intern_vit.py:
LayerNorm eps 1e-6, qkv with bias, eager attention `(q*scale) @ k^T -> softmax -> @ v`, proj,
layer scales ls1/ls2, GELU MLP), written here in plain torch so that no InternVL code is needed.
--attn sdpa uses F.scaled_dot_product_attention instead (what a tuned PyTorch deployment gets).
Like the C bench, one layer's weights serve every layer unless --distinct-layers is given, a
warm-up pass runs first, and the timed region covers the whole forward of every chunk.

usage: python3 bench/torch_vit.py [--tiles 4] [--chunk N] [--dtype f32|bf16] [--layers 24]
                                  [--threads N] [--attn eager|sdpa] [--distinct-layers] [--json]
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

D, H, I, S, P = 1024, 16, 4096, 448, 14


class Block(nn.Module):
    def __init__(self, attn):
        super().__init__()
        self.norm1 = nn.LayerNorm(D, eps=1e-6)
        self.qkv = nn.Linear(D, 3 * D, bias=True)
        self.proj = nn.Linear(D, D)
        self.ls1 = nn.Parameter(torch.ones(D))
        self.norm2 = nn.LayerNorm(D, eps=1e-6)
        self.fc1 = nn.Linear(D, I)
        self.fc2 = nn.Linear(I, D)
        self.ls2 = nn.Parameter(torch.ones(D))
        self.attn = attn

    def attention(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, H, C // H).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.attn == "sdpa":
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            a = ((q * (C // H) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
            o = a @ v
        return self.proj(o.transpose(1, 2).reshape(B, N, C))

    def forward(self, x):
        x = x + self.attention(self.norm1(x)) * self.ls1
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x)))) * self.ls2


class Tower(nn.Module):
    def __init__(self, layers, attn, distinct):
        super().__init__()
        self.patch = nn.Conv2d(3, D, kernel_size=P, stride=P)
        self.cls = nn.Parameter(torch.randn(1, 1, D) * 0.5)
        self.pos = nn.Parameter(torch.randn(1, (S // P) ** 2 + 1, D) * 0.5)
        if distinct:
            self.blocks = nn.ModuleList(Block(attn) for _ in range(layers))
        else:
            b = Block(attn)
            self.blocks = nn.ModuleList([b] * layers)

    def embed(self, px):
        x = self.patch(px).flatten(2).transpose(1, 2)
        return torch.cat([self.cls.expand(x.shape[0], 1, -1), x], dim=1) + self.pos

    def forward(self, px):
        x = self.embed(px)
        for b in self.blocks:
            x = b(x)
        return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiles", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=0, help="tiles per forward call (default: all)")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--attn", choices=["eager", "sdpa"], default="eager")
    ap.add_argument("--distinct-layers", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dt = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    chunk = a.chunk if 0 < a.chunk <= a.tiles else a.tiles
    model = Tower(a.layers, a.attn, a.distinct_layers).to(dt).eval()
    px = (torch.rand(chunk, 3, S, S) * 4 - 2).to(dt)
    with torch.inference_mode():
        model.blocks[0](model.embed(px))  # warm-up: one layer on the chunk's shapes
        t0, c0 = time.perf_counter(), time.process_time()
        done = 0
        while done < a.tiles:
            n = min(chunk, a.tiles - done)
            out = model(px[:n])
            done += n
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    T, np_ = (S // P) ** 2 + 1, (S // P) ** 2
    flop_tile = a.layers * (2.0 * T * (4 * D * D + 2 * D * I) + 4.0 * T * T * D) + 2.0 * np_ * 3 * P * P * D
    res = {"bench": "vit", "impl": "torch", "model": "internvit-300m", "dtype": a.dtype, "attn": a.attn,
           "tiles": a.tiles, "chunk": chunk, "layers": a.layers, "threads": torch.get_num_threads(),
           "seconds": round(sec, 3), "cpu_seconds": round(cpu, 3), "tiles_per_s": round(a.tiles / sec, 4),
           "gflops": round(flop_tile * a.tiles / sec / 1e9, 1), "torch": torch.__version__,
           "checksum": float(out.float()[0, ::97, ::31].sum())}
    if a.json:
        print(json.dumps(res))
    else:
        print(f"vit internvit-300m torch {a.dtype} attn={a.attn} tiles={a.tiles} chunk={chunk} layers={a.layers} "
              f"threads={res['threads']}: {sec:.2f} s (cpu {cpu:.2f} s), {res['tiles_per_s']:.3f} tiles/s, "
              f"{res['gflops']:.1f} GFLOP/s (torch {torch.__version__})")


if __name__ == "__main__":
    main()
