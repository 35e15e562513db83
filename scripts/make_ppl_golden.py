#!/usr/bin/env python3
"""Float64 numpy re-computation of the perplexity that `qvlm eval --task ppl` reports, on the
qwen2-tiny fixture model (a plain Qwen2 decoder with tied embeddings), for tests/test_ppl.c.

usage: make_ppl_golden.py MODEL_DIR OUT.safetensors
Writes input_ids I64 [n] (a fixed pseudo-random token stream), and for each window length S in
SEQLENS: ppl.S F64 [1] and mean_nll.S F64 [1], with ppl = exp(mean over the floor(n/S)
non-overlapping windows of the window's mean next-token NLL) (definition: src/llm/ppl.h).
Everything (weights widened from BF16, norms, rotary, softmax, logits) is float64.
Needs numpy; run once, the output is committed. Not needed at test time.
"""
import json
import struct
import sys

import numpy as np

SEQLENS = (64, 100)


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        raw = data[a:b]
        if v["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif v["dtype"] == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        else:
            raise SystemExit(f"{path}: {k}: dtype {v['dtype']} not handled")
        out[k] = arr.astype(np.float64).reshape(v["shape"])
    return out


def write_safetensors(path, tensors):
    order = {"I64": 1, "F64": 2}
    items = sorted(tensors.items(), key=lambda kv: (order[kv[1][0]], kv[0].encode()))
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (dt, arr) in items:
        raw = arr.astype("<i8" if dt == "I64" else "<f8").tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def rms(x, w, eps):
    return w * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))


def window_nll(W, cfg, ids):
    C, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d, eps, L = C // H, cfg["rms_norm_eps"], len(ids)
    inv = 1.0 / (cfg["rope_theta"] ** (np.arange(0, d, 2) / d))
    ang = np.arange(L)[:, None] * inv[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]

    def rope(x):
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    h = W["model.embed_tokens.weight"][ids]
    causal = np.triu(np.ones((L, L), dtype=bool), 1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        n1 = rms(h, W[p + "input_layernorm.weight"], eps)
        q = (n1 @ W[p + "self_attn.q_proj.weight"].T + W[p + "self_attn.q_proj.bias"]).reshape(L, H, d)
        k = (n1 @ W[p + "self_attn.k_proj.weight"].T + W[p + "self_attn.k_proj.bias"]).reshape(L, KV, d)
        v = (n1 @ W[p + "self_attn.v_proj.weight"].T + W[p + "self_attn.v_proj.bias"]).reshape(L, KV, d)
        q, k = rope(q), rope(k)
        a = np.empty((L, H, d))
        for hh in range(H):
            g = hh // (H // KV)
            s = q[:, hh] @ k[:, g].T / np.sqrt(d)
            s[causal] = -np.inf
            s = np.exp(s - s.max(-1, keepdims=True))
            a[:, hh] = (s / s.sum(-1, keepdims=True)) @ v[:, g]
        h = h + a.reshape(L, H * d) @ W[p + "self_attn.o_proj.weight"].T
        n2 = rms(h, W[p + "post_attention_layernorm.weight"], eps)
        gt = n2 @ W[p + "mlp.gate_proj.weight"].T
        ut = n2 @ W[p + "mlp.up_proj.weight"].T
        h = h + (gt / (1 + np.exp(-gt)) * ut) @ W[p + "mlp.down_proj.weight"].T
    n = rms(h, W["model.norm.weight"], eps)
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    z = n[:-1] @ head.T
    m = z.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(-1, keepdims=True)))[:, 0]
    return lse - z[np.arange(L - 1), ids[1:]]


def main(argv):
    model, out = argv[1], argv[2]
    cfg = json.load(open(f"{model}/config.json"))
    W = load_safetensors(f"{model}/model.safetensors")
    ids = np.random.default_rng(2024).integers(0, 2003, size=3 * 64 + 37)
    tensors = {"input_ids": ("I64", ids)}
    for S in SEQLENS:
        nw = len(ids) // S
        losses = [window_nll(W, cfg, ids[w * S:(w + 1) * S]).mean() for w in range(nw)]
        mean = float(np.mean(losses))
        tensors[f"ppl.{S}"] = ("F64", np.array([np.exp(mean)]))
        tensors[f"mean_nll.{S}"] = ("F64", np.array([mean]))
        print(f"seqlen {S}: {nw} windows, mean nll {mean:.10f}, ppl {np.exp(mean):.10f}")
    write_safetensors(out, tensors)


if __name__ == "__main__":
    main(sys.argv)
