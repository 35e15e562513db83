#!/usr/bin/env python3
"""Float64 goldens for `qvlm eval` (src/eval/eval.h), for tests/test_eval*.c.

usage: make_eval_golden.py SHARED_GOLDENS OUT_GOLDENS
  SHARED_GOLDENS  the fixtures' goldens folder (fixtures/goldens, with the full search_*.safetensors
                  that hold the quantized models' logits)
  OUT_GOLDENS     tests/fixtures/goldens

Writes:
  <model>/eval_metrics.json for internvl2-qwen2-tiny and qwen2-vl-tiny. The reference's (PyTorch,
      CPU FP32) logits of the loss rows of calibration sample 0 (= caption-file entry calib-3) of
      the FP model (forward.safetensors) and of each quantized model (search_<m>.safetensors)
      give, in float64 from the log-softmax: the row count, Σ NLL, Σ KL(p_FP || p) (each row
      clamped at 0), the rows whose argmax is the target, the rows whose argmax equals the FP
      model's, and `near_ties` = rows whose two largest logits are closer than 1e-3 (an argmax
      there may flip between implementations). `loss` = the golden mean NLL over all 4 samples.
  qwen2-vl-tiny/eval_scales_<m>.json for the searches the tests need as scales folders: the search's
      config and entries (prev_op, layers) only; the scale tensors are cut with
      scripts/fixture_slice.py (see the end of this file).
  qwen2-tiny/eval_greedy.json: two windows of 32 tokens, 8 random ones continued greedily by the
      FP qwen2-tiny in float64 (so its argmax mostly is the target), with Σ NLL, the rows whose
      argmax is the target and the near ties — token accuracy with something to measure.
  eval/derangement.json: Sattolo's derangement (src/eval/derange.c) on numpy's PCG64 stream for a
      few (seed, n), drawn here with numpy's own generator (random_raw) and the masked-rejection
      interval of ALGORITHMS.md §12.3 — checked first to reproduce numpy's Generator.permutation.
Needs numpy; run once, the outputs are committed. Not needed at test time.
"""
import json
import os
import struct
import sys

import numpy as np

METHODS = ["rtn_w3g128", "awq_w3g128", "mbq_w3g128_reweight_mae", "mbq_w4a8_reweight_mae"]
MODELS = ["internvl2-qwen2-tiny", "qwen2-vl-tiny"]
SAMPLE0_ENTRY = "calib-3"  # calibration batch order: calib-3, calib-2, calib-1, calib-0


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    dt = {"F32": np.float32, "I64": np.int64, "BOOL": np.bool_, "F64": np.float64}
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], dtype=dt[v["dtype"]]).reshape(v["shape"])
    return out


def log_softmax(z):
    z = z.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))


def near_ties(z):
    s = np.sort(z.astype(np.float64), axis=1)
    return int(((s[:, -1] - s[:, -2]) < 1e-3).sum())


def model_golden(shared, model):
    fw = load(os.path.join(shared, model, "forward.safetensors"))
    cb = load(os.path.join(shared, model, "calib_batch.safetensors"))
    meta = json.load(open(os.path.join(shared, model, "calib_batch.json")))
    assert meta["sample_ids_in_batch_order"][0] == SAMPLE0_ENTRY
    idx = fw["logits.loss_rows.sample0.index"]
    assert (idx[:, 0] == 0).all()
    tg = cb["labels"][0, idx[:, 1] + 1]
    a = fw["logits.loss_rows.sample0"]
    la = log_softmax(a)
    rows = len(tg)
    fp_arg = a.argmax(axis=1)
    out = {"sample_entry": SAMPLE0_ENTRY, "rows": rows,
           "fp": {"nll_sum": float(-la[np.arange(rows), tg].sum()), "correct": int((fp_arg == tg).sum()),
                  "near_ties": near_ties(a), "loss": float(fw["loss"][0])}}
    pa = np.exp(la)
    for m in METHODS:
        s = load(os.path.join(shared, model, "search_%s.safetensors" % m))
        assert (s["logits.loss_rows.sample0.index"] == idx).all()
        b = s["logits.loss_rows.sample0"]
        lb = log_softmax(b)
        kl = np.maximum((pa * (la - lb)).sum(axis=1), 0.0)
        arg = b.argmax(axis=1)
        out[m] = {"nll_sum": float(-lb[np.arange(rows), tg].sum()), "kl_sum": float(kl.sum()),
                  "kl_max": float(kl.max()), "correct": int((arg == tg).sum()), "agree": int((arg == fp_arg).sum()),
                  "near_ties": near_ties(b), "loss": float(s["loss"][0])}
    return out


def scales_json(shared, model, m):
    src = json.load(open(os.path.join(shared, model, "search_%s.json" % m)))
    cfg = {k: src["config"][k] for k in ("method", "w_bit", "a_bit", "w_group", "zero_point") if k in src["config"]}
    cfg["method"] = cfg["method"].split()[0]
    entries = [{"index": e["index"], "prev_op": e["prev_op"], "layers": e["layers"]} for e in src["entries"]]
    return {"note": "trimmed from goldens/%s/search_%s.json by scripts/make_eval_golden.py" % (model, m),
            "config": cfg, "entries": entries, "loss": src["loss"], "fp_loss": src["fp_loss"]}


# ---- a text the FP model predicts: greedy continuations (qwen2-tiny, float64) ----------------------

def qwen2_logits(W, cfg, ids):
    """Logits [L, V] of a plain Qwen2 decoder in float64 (as scripts/make_ppl_golden.py's window_nll)."""
    from make_ppl_golden import rms
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
        p = "model.layers.%d." % i
        n1 = rms(h, W[p + "input_layernorm.weight"], eps)
        q = (n1 @ W[p + "self_attn.q_proj.weight"].T + W[p + "self_attn.q_proj.bias"]).reshape(L, H, d)
        k = (n1 @ W[p + "self_attn.k_proj.weight"].T + W[p + "self_attn.k_proj.bias"]).reshape(L, KV, d)
        v = (n1 @ W[p + "self_attn.v_proj.weight"].T + W[p + "self_attn.v_proj.bias"]).reshape(L, KV, d)
        q, k = rope(q), rope(k)
        a = np.empty((L, H, d))
        for hh in range(H):
            g = hh // (H // KV)
            sc = q[:, hh] @ k[:, g].T / np.sqrt(d)
            sc[causal] = -np.inf
            sc = np.exp(sc - sc.max(-1, keepdims=True))
            a[:, hh] = (sc / sc.sum(-1, keepdims=True)) @ v[:, g]
        h = h + a.reshape(L, H * d) @ W[p + "self_attn.o_proj.weight"].T
        n2 = rms(h, W[p + "post_attention_layernorm.weight"], eps)
        gt = n2 @ W[p + "mlp.gate_proj.weight"].T
        ut = n2 @ W[p + "mlp.up_proj.weight"].T
        h = h + (gt / (1 + np.exp(-gt)) * ut) @ W[p + "mlp.down_proj.weight"].T
    n = rms(h, W["model.norm.weight"], eps)
    return n @ W.get("lm_head.weight", W["model.embed_tokens.weight"]).T


def greedy_golden(model_dir, seqlen=32, windows=2, prompt=8):
    """Windows of `prompt` random tokens continued greedily by the FP model: its token accuracy
    is then high by construction, which a random-weight model cannot show on real text."""
    from make_ppl_golden import load_safetensors
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    W = load_safetensors(os.path.join(model_dir, "model.safetensors"))
    rng = np.random.default_rng(77)
    ids, nll, correct, ties = [], 0.0, 0, 0
    for w in range(windows):
        win = list(rng.integers(0, 2003, size=prompt))
        while len(win) < seqlen:
            win.append(int(qwen2_logits(W, cfg, np.array(win))[-1].argmax()))
        z = qwen2_logits(W, cfg, np.array(win))[:-1]
        lz = log_softmax(z)
        tg = np.array(win[1:])
        nll += float(-lz[np.arange(seqlen - 1), tg].sum())
        correct += int((z.argmax(1) == tg).sum())
        ties += near_ties(z)
        ids += [int(t) for t in win]
    return {"model": "qwen2-tiny", "seqlen": seqlen, "ids": ids, "rows": windows * (seqlen - 1), "nll_sum": nll,
            "correct": correct, "near_ties": ties}


# ---- numpy's PCG64 stream with the §12.3 bounded draw --------------------------------------------

class Stream:
    def __init__(self, seed):
        self.bg = np.random.default_rng(seed).bit_generator
        self.half = None

    def next64(self):
        return int(self.bg.random_raw())

    def next32(self):
        if self.half is not None:
            v, self.half = self.half, None
            return v
        v = self.next64()
        self.half = v >> 32
        return v & 0xFFFFFFFF

    def interval(self, mx):
        if mx == 0:
            return 0
        mask = mx
        for s in (1, 2, 4, 8, 16, 32):
            mask |= mask >> s
        while True:
            v = (self.next32() if mx <= 0xFFFFFFFF else self.next64()) & mask
            if v <= mx:
                return v


def fisher_yates(seed, n):
    r, a = Stream(seed), list(range(n))
    for i in range(n - 1, 0, -1):
        j = r.interval(i)
        a[i], a[j] = a[j], a[i]
    return a


def sattolo(seed, n):
    r, a = Stream(seed), list(range(n))
    for i in range(n - 1, 0, -1):
        j = r.interval(i - 1)
        a[i], a[j] = a[j], a[i]
    return a


def main():
    shared, out = sys.argv[1], sys.argv[2]
    for model in MODELS:
        g = model_golden(shared, model)
        with open(os.path.join(out, model, "eval_metrics.json"), "w") as f:
            json.dump(g, f, indent=1)
            f.write("\n")
    for model, ms in (("qwen2-vl-tiny", ["rtn_w3g128", "awq_w3g128", "mbq_w4a8_reweight_mae"]),):
        for m in ms:
            with open(os.path.join(out, model, "eval_scales_%s.json" % m), "w") as f:
                json.dump(scales_json(shared, model, m), f, indent=1)
                f.write("\n")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    g = greedy_golden(os.path.join(os.path.dirname(shared), "models", "qwen2-tiny"))
    with open(os.path.join(out, "qwen2-tiny", "eval_greedy.json"), "w") as f:
        json.dump(g, f)
        f.write("\n")
    # the stream reproduces numpy's own shuffle before it is trusted for Sattolo
    for seed, n in ((42, 10), (42, 100), (0, 7), (1234, 33)):
        assert fisher_yates(seed, n) == list(np.random.default_rng(seed).permutation(n)), (seed, n)
    cases = []
    for seed, n in ((42, 2), (42, 4), (42, 10), (7, 33), (2 ** 40 + 5, 17), (0, 128)):
        p = sattolo(seed, n)
        assert all(p[k] != k for k in range(n))
        cases.append({"seed": seed, "n": n, "perm": p})
    os.makedirs(os.path.join(out, "eval"), exist_ok=True)
    with open(os.path.join(out, "eval", "derangement.json"), "w") as f:
        json.dump({"algorithm": "Sattolo on numpy default_rng(seed) (PCG64), interval() as ALGORITHMS.md 12.3",
                   "cases": cases}, f)
        f.write("\n")


if __name__ == "__main__":
    main()

# The scale tensors (run from the repository root, SH = the shared goldens):
#   for m in rtn_w3g128 awq_w3g128 mbq_w4a8_reweight_mae; do
#     scripts/fixture_slice.py $SH/qwen2-vl-tiny/search_$m.safetensors \
#       tests/fixtures/goldens/qwen2-vl-tiny/eval_scales_$m.safetensors 'scale.*' loss
#   done
# (internvl2-qwen2-tiny's searches are already in tests/fixtures: export_search_*, search_awq_w3g128*.)
