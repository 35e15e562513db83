#!/usr/bin/env python3
"""Checks qvlm's exports with the real Python stack (run on a machine with torch + transformers;
safetensors, compressed-tensors are used when installed).

  check_export.py --qvlm build/qvlm --fixtures tests/fixtures [--work DIR]

What it checks (each line prints PASS / FAIL / SKIP; exit 1 on any FAIL):
 1. mbq-pt: torch.load(weights_only=True) of `qvlm export --format mbq-pt` gives exactly MBQ's
    structure {"scale": [(str, (str, ...), 1-D tensor), ...]} (ALGORITHMS.md §5.8), in the model
    dtype, with the values of the scales DIR rounded to it; torch.save of that object loads back
    in qvlm (`qvlm export --scales X.pt --format mbq-pt` again) and gives the same list.
 2. fake: safetensors.torch.load_file of every shard has the original keys, shapes and dtypes;
    for qwen2-tiny, Qwen2ForCausalLM.from_pretrained loads the export and its weights equal an
    independent torch re-implementation of the fake quantizer (ALGORITHMS.md §1.2, CPU division
    form) applied to the original weights; logits are finite.
 3. awq / gptq / compressed-tensors: the packed tensors are unpacked here with torch ops written
    from FORMATS.md (not qvlm's code) and must dequantize to the fake export's weights exactly;
    with compressed-tensors installed, transformers' decompression of the CT export must agree too.
 4. fp8: weight codes dequantize to T(code) * scale with scales [out, 1]; loads via
    compressed-tensors when installed.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile

FAILS = []


def report(name, ok, detail=""):
    tag = "PASS" if ok is True else ("SKIP" if ok is None else "FAIL")
    print(f"{tag:4}  {name}{(': ' + detail) if detail else ''}", flush=True)
    if ok is False:
        FAILS.append(name)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {r.returncode}\n{r.stdout}{r.stderr}")
    return r.stdout


def scales_dir(fix, model, search, work):
    d = os.path.join(work, f"scales_{model}_{search}")
    os.makedirs(d, exist_ok=True)
    g = os.path.join(fix, "goldens", model, f"export_{search}")
    shutil.copy(g + ".safetensors", os.path.join(d, "scales.safetensors"))
    shutil.copy(g + ".json", os.path.join(d, "search.json"))
    return d


def load_dir(path):
    from safetensors.torch import load_file
    idx = os.path.join(path, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    out = {}
    for f in files:
        out.update(load_file(os.path.join(path, f)))
    return out


# ---- independent re-implementations (ALGORITHMS.md §1.2, FORMATS.md §2-§4) ------------------

def fq_asym(w, bits, group):
    """MBQ/AWQ asymmetric fake quantization in w's dtype, CPU division form (torch on CPU)."""
    import torch
    shape = w.shape
    x = w.reshape(-1, group)
    hi = x.amax(dim=1, keepdim=True)
    lo = x.amin(dim=1, keepdim=True)
    qmax = 2 ** bits - 1
    s = (hi - lo).clamp(min=1e-5) / qmax
    z = (-torch.round(lo / s)).clamp_(0, qmax)
    return ((torch.clamp(torch.round(x / s) + z, 0, qmax) - z) * s).reshape(shape)


def bits_unpack(words, n, b):
    """Dense LSB-first stream along the last dim: int32 [..., W] -> int64 [..., n]."""
    import torch
    w = words.to(torch.int64) & 0xFFFFFFFF
    out = torch.zeros(*w.shape[:-1], n, dtype=torch.int64)
    for j in range(n):
        bit = j * b
        k, off = bit // 32, bit % 32
        v = w[..., k] >> off
        if off + b > 32:
            v = v | (w[..., k + 1] << (32 - off))
        out[..., j] = v & ((1 << b) - 1)
    return out


def awq_unpack(words):
    import torch
    w = words.to(torch.int64) & 0xFFFFFFFF
    order = [0, 2, 4, 6, 1, 3, 5, 7]
    out = torch.zeros(*w.shape[:-1], w.shape[-1] * 8, dtype=torch.int64)
    for i in range(8):
        out[..., order[i]::8] = (w >> (4 * i)) & 0xF
    return out


def deq(u, z, s, group, dtype):
    import torch
    g = torch.arange(u.shape[1]) // group
    return ((u - z[:, g]).to(torch.float32) * s[:, g].to(torch.float32)).to(dtype)


# ---- checks -----------------------------------------------------------------------------------

def check_mbq_pt(args, work):
    import torch
    from safetensors.torch import load_file
    model = os.path.join(args.fixtures, "models", "internvl2-qwen2-tiny")
    sd = scales_dir(args.fixtures, "internvl2-qwen2-tiny", "search_mbq_w3g128_reweight_mae", work)
    pt = os.path.join(work, "mbq.pt")
    run([args.qvlm, "export", model, "--scales", sd, "--format", "mbq-pt", "-o", pt, "--force", "-q"])
    obj = torch.load(pt, map_location="cpu", weights_only=True)
    ok = isinstance(obj, dict) and list(obj.keys()) == ["scale"] and isinstance(obj["scale"], list)
    entries = json.load(open(os.path.join(sd, "search.json")))["entries"]
    st = load_file(os.path.join(sd, "scales.safetensors"))
    for k, e in enumerate(obj["scale"] if ok else []):
        ok &= isinstance(e, tuple) and len(e) == 3 and isinstance(e[0], str) and isinstance(e[1], tuple)
        ok &= all(isinstance(n, str) for n in e[1]) and isinstance(e[2], torch.Tensor) and e[2].dim() == 1
        ok &= e[0] == entries[k]["prev_op"] and list(e[1]) == entries[k]["layers"]
        ok &= e[2].dtype == torch.bfloat16 and torch.equal(e[2], st[f"scale.{k:03d}"].to(torch.bfloat16))
    report("mbq-pt: torch.load(weights_only=True) gives MBQ's structure and values", bool(ok))
    # torch.save of the same object reads back in qvlm and round-trips
    pt2 = os.path.join(work, "torch_saved.pt")
    torch.save(obj, pt2)
    pt3 = os.path.join(work, "mbq_again.pt")
    run([args.qvlm, "export", model, "--scales", pt2, "--format", "mbq-pt", "-o", pt3, "--force", "-q"])
    again = torch.load(pt3, weights_only=True)
    same = len(again["scale"]) == len(obj["scale"]) and all(
        a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2]) for a, b in zip(again["scale"], obj["scale"]))
    report("mbq-pt: a torch.save file is read by qvlm (scale_path) and written back identically", same)


def check_fake(args, work):
    import torch
    for m in ["internvl2-qwen2-tiny", "internvl2-internlm2-tiny", "qwen2-vl-tiny", "internvl3-tiny"]:
        model = os.path.join(args.fixtures, "models", m)
        sd = scales_dir(args.fixtures, m, "search_mbq_w3g128_reweight_mae", work)
        out = os.path.join(work, f"fake_{m}")
        run([args.qvlm, "export", model, "--scales", sd, "--format", "fake", "-o", out, "--force", "-q"])
        a, b = load_dir(model), load_dir(out)
        ok = a.keys() == b.keys() and all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype for k in a)
        report(f"fake {m}: load_file keys, shapes and dtypes equal the original", ok)
    # qwen2-tiny: transformers loads it as Qwen2ForCausalLM; weights = torch fake quant (CPU form)
    try:
        from transformers import Qwen2ForCausalLM
    except ImportError:
        report("fake qwen2-tiny: Qwen2ForCausalLM.from_pretrained", None, "transformers missing")
        return
    model = os.path.join(args.fixtures, "models", "qwen2-tiny")
    out = os.path.join(work, "fake_qwen2")
    run([args.qvlm, "export", model, "--format", "fake", "--w-bit", "4", "--w-group", "128", "--division", "cpu", "-o", out,
         "--force", "-q"])
    q = Qwen2ForCausalLM.from_pretrained(out, torch_dtype=torch.bfloat16)
    ref = load_dir(model)
    ok = True
    for name, p in q.named_parameters():
        key = name if name in ref else None
        if key is None:
            continue
        w = ref[key]
        if ".layers." in key and key.endswith("_proj.weight"):
            w = fq_asym(w, 4, 128)
        ok &= torch.equal(p.detach(), w)
    ids = torch.tensor([[1, 5, 9, 42, 7]])
    logits = q(ids).logits
    report("fake qwen2-tiny: Qwen2ForCausalLM loads it; weights = torch fake quant; logits finite",
           bool(ok and torch.isfinite(logits).all()))


def check_packed(args, work):
    import torch
    m = "internvl2-qwen2-tiny"
    model = os.path.join(args.fixtures, "models", m)
    sd = scales_dir(args.fixtures, m, "search_mbq_w3g128_reweight_mae", work)
    fake4 = os.path.join(work, "fake4")
    run([args.qvlm, "export", model, "--scales", sd, "--format", "fake", "--w-bit", "4", "-o", fake4, "--force", "-q"])
    fake3 = os.path.join(work, "fake3")
    run([args.qvlm, "export", model, "--scales", sd, "--format", "fake", "-o", fake3, "--force", "-q"])
    f4, f3 = load_dir(fake4), load_dir(fake3)
    for fmt, extra, fake, bits in [("awq", ["--w-bit", "4"], f4, 4), ("gptq", [], f3, 3), ("compressed-tensors", [], f3, 3)]:
        out = os.path.join(work, fmt)
        run([args.qvlm, "export", model, "--scales", sd, "--format", fmt, "-o", out, "--force", "-q"] + extra)
        t = load_dir(out)
        ok, n = True, 0
        for k, w in fake.items():
            if ".layers." not in k or not k.endswith("_proj.weight"):
                continue
            mod = k[: -len(".weight")]
            co, ci = w.shape
            if fmt == "awq":
                u = awq_unpack(t[mod + ".qweight"]).t()            # [out, in]
                z = awq_unpack(t[mod + ".qzeros"]).t()
                s = t[mod + ".scales"].t()
                d = deq(u, z, s, ci // s.shape[1], w.dtype)
            elif fmt == "gptq":
                u = bits_unpack(t[mod + ".qweight"].t().contiguous(), ci, bits)   # stream along in
                z = bits_unpack(t[mod + ".qzeros"], co, bits).t() + 1             # v1: z - 1 stored
                s = t[mod + ".scales"].t()
                g = t[mod + ".g_idx"]
                ok &= torch.equal(g, torch.arange(ci, dtype=torch.int32) // (ci // s.shape[1]))
                d = deq(u, z, s, ci // s.shape[1], w.dtype)
            else:
                u = bits_unpack(t[mod + ".weight_packed"], ci, bits)
                s = t[mod + ".weight_scale"]
                z = bits_unpack(t[mod + ".weight_zero_point"].t().contiguous(), co, bits).t()
                ok &= t[mod + ".weight_shape"].tolist() == [co, ci]
                d = deq(u, z, s, ci // s.shape[1], w.dtype)
            ok &= torch.equal(d, w)
            n += 1
        report(f"{fmt}: unpacked from FORMATS.md with torch, {n} linears equal the fake export", bool(ok and n == 21))
    try:
        from transformers import AutoModelForCausalLM
        import compressed_tensors  # noqa: F401
    except ImportError:
        report("compressed-tensors: transformers decompression", None, "compressed-tensors missing")
        return
    # a text-only model transformers can build: qwen2-tiny W4 asym g128 (RTN, CPU division form)
    q2 = os.path.join(args.fixtures, "models", "qwen2-tiny")
    ct = os.path.join(work, "ct_qwen2")
    fk = os.path.join(work, "fake_qwen2_ct")
    for fmt, o in [("compressed-tensors", ct), ("fake", fk)]:
        run([args.qvlm, "export", q2, "--format", fmt, "--w-bit", "4", "--w-group", "128", "--division", "cpu", "-o", o,
             "--force", "-q"])
    try:
        from transformers import CompressedTensorsConfig
        mct = AutoModelForCausalLM.from_pretrained(ct, torch_dtype=torch.bfloat16,
                                                   quantization_config=CompressedTensorsConfig(run_compressed=False))
        fake = load_dir(fk)
        ok = all(torch.equal(p.detach(), fake[n]) for n, p in mct.named_parameters() if n in fake)
        report("compressed-tensors qwen2-tiny: transformers decompresses to the fake export", bool(ok))
    except Exception as e:  # noqa: BLE001
        report("compressed-tensors qwen2-tiny: transformers decompresses to the fake export", False, repr(e)[:300])


def check_fp8(args, work):
    import torch
    model = os.path.join(args.fixtures, "models", "internvl3-tiny")
    out = os.path.join(work, "fp8")
    run([args.qvlm, "export", model, "--format", "fp8", "-o", out, "--force", "-q"])
    t = load_dir(out)
    ok, n = True, 0
    for k, w in t.items():
        if w.dtype == torch.float8_e4m3fn:
            s = t[k + "_scale"]
            ok &= s.shape == (w.shape[0], 1) and s.dtype == torch.bfloat16
            ok &= bool(torch.isfinite(w.to(torch.bfloat16) * s).all())
            n += 1
    report(f"fp8: {n} F8_E4M3 weights with BF16 [out, 1] scales, all finite", bool(ok and n == 21))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qvlm", required=True)
    ap.add_argument("--fixtures", required=True)
    ap.add_argument("--work")
    a = ap.parse_args()
    a.qvlm = os.path.abspath(a.qvlm)
    work = a.work or tempfile.mkdtemp(prefix="qvlm-check-")
    os.makedirs(work, exist_ok=True)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is required")
        return 2
    for f in (check_mbq_pt, check_fake, check_packed, check_fp8):
        try:
            f(a, work)
        except Exception as e:  # noqa: BLE001
            report(f.__name__, False, repr(e)[:500])
    print(f"{len(FAILS)} failure(s); outputs in {work}")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
