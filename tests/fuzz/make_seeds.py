#!/usr/bin/env python3
"""make_seeds.py — writes the seed corpora of tests/fuzz/seeds/ (except image, see
make_image_seeds.c) from the fixtures, cut down so libFuzzer mutates small inputs: the
fuzzers' speed falls with input size, and every seed should be under ~16 KiB.

Run from the repository root: python3 tests/fuzz/make_seeds.py. Pure Python; not needed to
build or test (the seeds are committed)."""
import json
import os
import struct

FIX = "tests/fixtures"
OUT = "tests/fuzz/seeds"


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(rel, mode="r"):
    with open(os.path.join(FIX, rel), mode) as f:
        return f.read()


# ---- safetensors: tiny files in the reference writer's layout, one per feature --------------
def safetensors(tensors, meta=None, pad=True):
    """tensors: [(name, dtype, shape, bytes)] in data order."""
    hdr, off, data = {}, 0, b""
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dt, shape, raw in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    h = json.dumps(hdr, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


put("safetensors", "f32_bf16_meta", safetensors(
    [("w", "F32", [2, 3], struct.pack("<6f", *range(6))), ("b", "BF16", [3], b"\x80\x3f" * 3)],
    {"format": "pt"}))
put("safetensors", "all_dtypes", safetensors(
    [(f"t{i}", dt, [2], b"\x01" * (2 * n)) for i, (dt, n) in enumerate(
        [("F64", 8), ("I64", 8), ("U64", 8), ("F32", 4), ("I32", 4), ("U32", 4), ("F16", 2), ("BF16", 2),
         ("I16", 2), ("U16", 2), ("F8_E4M3", 1), ("F8_E5M2", 1), ("F8_E8M0", 1), ("I8", 1), ("U8", 1),
         ("BOOL", 1)])]))
put("safetensors", "scalar_and_empty", safetensors(
    [("scalar", "F32", [], b"\x00\x00\x80\x3f"), ("empty", "F16", [0, 4], b""), ("x", "I8", [1, 1, 1, 2], b"\x01\x02")]))
put("safetensors", "empty_header", safetensors([], pad=False))
put("safetensors", "unicode_names", safetensors(
    [("vision_model.\u00e9\u4e2d.weight", "U8", [3], b"abc"), ("a\\\"b", "U8", [1], b"z")], {"k": "v\u00fc"}))
# the small tensors of a real fixture checkpoint (names, dtypes, shapes), data zeroed
real = read("models/qwen2-tiny/model.safetensors", "rb")
n = struct.unpack("<Q", real[:8])[0]
hdr = json.loads(real[8:8 + n])
size = {"F32": 4, "BF16": 2, "F16": 2}
small = [(k, v["dtype"], v["shape"], b"\0" * (v["data_offsets"][1] - v["data_offsets"][0]))
         for k, v in sorted(hdr.items()) if k != "__metadata__" and v["data_offsets"][1] - v["data_offsets"][0] <= 256]
put("safetensors", "fixture_small_tensors", safetensors(small[:12], hdr.get("__metadata__")))

# ---- json / config / index -------------------------------------------------------------------
models = ["internvl2-qwen2-tiny", "internvl2-internlm2-tiny", "internvl3-tiny", "qwen2-tiny", "qwen2-vl-tiny",
          "llava-onevision-qwen2-tiny"]
for m in models:
    put("config", m + ".json", read(f"models/{m}/config.json"))
put("config", "qwen2-vl-tiny.preprocessor_config.json", read("models/qwen2-vl-tiny/preprocessor_config.json"))
put("config", "llava_pinpoints_range.json", json.dumps(
    {"architectures": ["LlavaQwenForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
     "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 300,
     "image_grid_pinpoints": "(1x1),...,(3x3)", "mm_hidden_size": 32}))
put("json", "config.json", read("models/internvl2-qwen2-tiny/config.json"))
put("json", "tokenizer_config.json", read("models/qwen2-vl-tiny/tokenizer_config.json"))
put("json", "special_tokens_map.json", read("models/internvl2-internlm2-tiny/special_tokens_map.json"))
put("json", "escapes.json", '{"a":"\\u00e9\\ud83d\\ude00\\n\\t\\"","b":[1,-2.5e-3,true,false,null,{}],"c":{"d":[[]]}}')
put("index", "internvl2-internlm2-tiny.json", read("models/internvl2-internlm2-tiny/model.safetensors.index.json"))
put("index", "small.json", json.dumps({"metadata": {"total_size": 12},
                                       "weight_map": {"a.weight": "model-00001-of-00002.safetensors",
                                                      "b.weight": "model-00002-of-00002.safetensors",
                                                      "c.bias": "model-00001-of-00002.safetensors"}}))

# ---- tokenizer.json: the Qwen2 fixture's settings with the vocab cut to the byte alphabet plus
# the first merges that stay inside it ---------------------------------------------------------
for m in ["qwen2-tiny", "internvl2-qwen2-tiny"]:
    t = json.loads(read(f"models/{m}/tokenizer.json"))
    vocab = t["model"]["vocab"]
    keep = {k: v for k, v in vocab.items() if v < 320}
    merges = []
    for mg in t["model"]["merges"]:
        a, b = mg if isinstance(mg, list) else mg.split(" ")
        if a in keep and b in keep and a + b in keep:
            merges.append(mg)
    t["model"]["vocab"] = keep
    t["model"]["merges"] = merges[:64]
    base = max(keep.values()) + 1
    for i, at in enumerate(t["added_tokens"]):
        at["id"] = base + i
    if t.get("post_processor") and t["post_processor"].get("type") == "TemplateProcessing":
        t["post_processor"] = None
    put("tokenizer_json", m + ".json", json.dumps(t, ensure_ascii=False))
# the legacy "a b" merge spelling
t["model"]["merges"] = [" ".join(mg) if isinstance(mg, list) else mg for mg in t["model"]["merges"]]
put("tokenizer_json", "string_merges.json", json.dumps(t, ensure_ascii=False))

# ---- tokenizer.model: the InternLM2 fixture's protobuf with the pieces cut to the first 300 ---
def varint(b, i):
    x, s = 0, 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << s
        s += 7
        if not c & 0x80:
            return x, i


def enc_varint(x):
    out = bytearray()
    while True:
        c = x & 0x7F
        x >>= 7
        out.append(c | (0x80 if x else 0))
        if not x:
            return bytes(out)


spm = read("models/internvl2-internlm2-tiny/tokenizer.model", "rb")
i, pieces, rest = 0, 0, b""
out = bytearray()
while i < len(spm):
    start = i
    key, i = varint(spm, i)
    wire = key & 7
    if wire == 0:
        _, i = varint(spm, i)
    elif wire == 2:
        ln, i = varint(spm, i)
        i += ln
    elif wire == 1:
        i += 8
    elif wire == 5:
        i += 4
    if key >> 3 == 1:
        pieces += 1
        if pieces > 300:
            continue
    out += spm[start:i]
put("spm", "internlm2_300_pieces.model", bytes(out))

# ---- captions ----------------------------------------------------------------------------------
# first byte: 0 = JSON array (.json), 1 = JSON Lines (.jsonl) (fuzz_captions.c)
caps = json.loads(read("calib/captions_sharegpt4v.json"))
put("captions", "sharegpt4v.json", b"\x00" + read("calib/captions_sharegpt4v.json", "rb"))
put("captions", "sharegpt4v.jsonl", b"\x01" + "\n".join(json.dumps(c) for c in caps).encode() + b"\n")
put("captions", "variants.json", b"\x00" + json.dumps([
    {"id": 7, "image": ["a.jpg", "b.png"], "conversations": [{"from": "human", "value": "<image>\n<image>\nx"},
                                                             {"from": "gpt", "value": "y"}]},
    {"id": 1.5, "conversations": [{"from": "human", "value": "text only"}]},
    {"image": "", "conversations": [{"from": "gpt", "value": "\u00e9"}], "extra": {"k": [1, 2]}}]).encode())

# ---- yaml: the repository's configs --------------------------------------------------------------
for root, _, files in os.walk("configs"):
    for f in sorted(files):
        if f.endswith(".yaml"):
            rel = os.path.relpath(os.path.join(root, f), "configs").replace("/", "_")
            with open(os.path.join(root, f), "rb") as fh:
                put("yaml", rel, fh.read())
put("yaml", "list_of_runs.yaml", """- model: qwen2
  model_args: pretrained="m",device_map=auto
  method: rtn
  w_bit: 4
  w_group: -1
  seed: 0x2a
- model_args: pretrained='x'
  calib_data: null
  method: null
  alpha: .5
  export: {format: awq, path: out/awq}
""")
