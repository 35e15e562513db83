#!/usr/bin/env python3
"""make_bad_inputs.py — writes the files of tests/bad_inputs/ (the bad-input catalogue that
tests/test_bad_inputs.c runs; README.md lists every case). Pure Python, run from the
repository root; the files are committed, so this is only needed to change them. Inputs
derived from the fixtures at test time (truncated JPEGs, a sharded checkpoint with a shard
removed) are made by the test itself."""
import json
import os
import struct
import zlib

OUT = "tests/bad_inputs"
FIX = "tests/fixtures"


def put(rel, data):
    path = os.path.join(OUT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(path, "wb") as f:
        f.write(data)


def st_file(header, data=b"", length=None):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def ent(dt, shape, a, b):
    return {"dtype": dt, "shape": shape, "data_offsets": [a, b]}


# ---- safetensors (each becomes model.safetensors beside the qwen2-tiny config) ------------------
put("safetensors/too_short.safetensors", b"\x10\x00\x00")
put("safetensors/header_length_past_eof.safetensors", st_file({"w": ent("F32", [1], 0, 4)}, b"\0" * 4, length=4096))
put("safetensors/header_length_over_limit.safetensors", struct.pack("<Q", 1 << 40) + b"{}")
put("safetensors/offsets_past_eof.safetensors", st_file({"w": ent("F32", [4], 0, 16)}, b"\0" * 8))
put("safetensors/overlapping_tensors.safetensors",
    st_file({"a": ent("F32", [2], 0, 8), "b": ent("F32", [2], 4, 12)}, b"\0" * 12))
put("safetensors/shape_times_dtype_not_bytes.safetensors", st_file({"w": ent("F32", [3], 0, 8)}, b"\0" * 8))
put("safetensors/shape_overflow.safetensors",
    st_file({"w": ent("F32", [1 << 62, 1 << 62], 0, 8)}, b"\0" * 8))
put("safetensors/unknown_dtype.safetensors", st_file({"w": ent("F12", [2], 0, 3)}, b"\0" * 3))
put("safetensors/duplicate_names.safetensors",
    st_file(b'{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}',
            b"\0\0"))
put("safetensors/header_not_utf8.safetensors",
    st_file(b'{"w\xff\xfe":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\0"))
put("safetensors/header_deeply_nested.safetensors",
    st_file(b'{"__metadata__":' + b"[" * 5000 + b"]" * 5000 + b"}"))
put("safetensors/trailing_bytes.safetensors", st_file({"w": ent("U8", [2], 0, 2)}, b"\0" * 6))
put("safetensors/gap_between_tensors.safetensors",
    st_file({"a": ent("U8", [2], 0, 2), "b": ent("U8", [2], 4, 6)}, b"\0" * 6))

# ---- config.json (beside a valid model.safetensors) ---------------------------------------------
base = json.load(open(os.path.join(FIX, "models/qwen2-tiny/config.json")))


def cfg(name, change=None, drop=None, raw=None):
    c = dict(base)
    if drop:
        c.pop(drop)
    if change:
        c.update(change)
    put(f"config/{name}.json", raw if raw is not None else json.dumps(c, indent=2))


cfg("missing_field", drop="hidden_size")
cfg("wrong_type", change={"num_hidden_layers": "2"})
cfg("dims_past_caps", change={"vocab_size": 1 << 40})
cfg("negative_dim", change={"intermediate_size": -128})
cfg("non_finite_eps", raw=json.dumps(base, indent=2).replace('"rms_norm_eps": 1e-06', '"rms_norm_eps": 1e999'))
cfg("unsupported_architecture", change={"architectures": ["MistralForCausalLM"]})
cfg("not_utf8", raw=json.dumps(base).encode().replace(b'"qwen2"', b'"qw\xc3\x28n2"'))
cfg("deeply_nested", raw='{"architectures": ["Qwen2ForCausalLM"], "x": ' + "[" * 1000 + "]" * 1000 + "}")
cfg("truncated", raw=json.dumps(base, indent=2)[:120])
vl = json.load(open(os.path.join(FIX, "models/qwen2-vl-tiny/config.json")))
vl["vision_config"]["mlp_ratio"] = 9000000000000000000
put("config/vision_mlp_ratio_overflow.json", json.dumps(vl, indent=2))

# ---- tokenizer.json (alone in a model folder, for qvlm tokenize) --------------------------------
tok = json.load(open("tests/fuzz/seeds/tokenizer_json/qwen2-tiny.json"))


def tokenizer(name, edit):
    t = json.loads(json.dumps(tok))
    edit(t)
    put(f"tokenizer/{name}.json", json.dumps(t, ensure_ascii=False))


tokenizer("unknown_model_type", lambda t: t["model"].update(type="WordPiece"))
tokenizer("unknown_pre_tokenizer", lambda t: t.update(pre_tokenizer={"type": "Whitespace"}))
tokenizer("bad_regex", lambda t: t["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex="(?<unclosed"))
tokenizer("merge_outside_vocab", lambda t: t["model"].update(merges=[["Q", "\u00e9\u00e9\u00e9"]]))
put("tokenizer/truncated.json", json.dumps(tok)[:3000])

# ---- run configuration YAML (library parser: qvlm calib/quantize are not written yet) ------------
head = 'model: internvl2\nmodel_args: pretrained="tests/fixtures/models/internvl2-qwen2-tiny"\n'
put("yaml/unknown_key.yaml", head + "method: mbq\nw_bits: 4\n")
put("yaml/wrong_type.yaml", head + 'method: mbq\nw_bit: "4"\n')
put("yaml/out_of_range.yaml", head + "w_group: 16\n")
put("yaml/tab_indent.yaml", head + "export:\n\tformat: awq\n\tpath: out\n")
put("yaml/duplicate_key.yaml", head + "w_bit: 4\nmethod: awq\nw_bit: 3\n")
put("yaml/alias.yaml", head + "a_bit: &x 8\nw_bit: *x\n")
put("yaml/two_documents.yaml", head + "---\n" + head)
put("yaml/syntax_error.yaml", head + "method: [mbq\n")
put("yaml/not_utf8.yaml", head.encode() + b"scale_path: out\xff\xfe\n")

# ---- caption files -----------------------------------------------------------------------------
caps = json.load(open(os.path.join(FIX, "calib/captions_sharegpt4v.json")))
c = json.loads(json.dumps(caps))
del c[2]["conversations"]
put("captions/missing_conversations.json", json.dumps(c, indent=1))
lines = [json.dumps(x) for x in caps]
lines[1] = lines[1].replace('"value"', '"valeu"', 1)
put("captions/turn_missing_value.jsonl", "\n".join(lines) + "\n")
c = json.loads(json.dumps(caps))
c[1]["image"] = 42
put("captions/image_not_a_path.json", json.dumps(c, indent=1))
c = json.loads(json.dumps(caps))
c[3]["image"] = "no_such_image.jpg"
put("captions/missing_image.json", json.dumps(c, indent=1))
put("captions/truncated.json", json.dumps(caps, indent=1)[:700])
put("captions/not_a_list.json", json.dumps(caps[0]))
put("captions/wrong_extension.txt", json.dumps(caps))


# ---- images --------------------------------------------------------------------------------------
def chunk(kind, data, crc=None):
    c = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", c & 0xFFFFFFFF)


def png(w, h, bad_crc=False, rows=None):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    raw = rows if rows is not None else b"".join(b"\0" + bytes((x * 7 + y * 3) & 255 for x in range(3 * w))
                                                 for y in range(h))
    idat = zlib.compress(raw)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", idat, crc=0x12345678 if bad_crc else None) + chunk(b"IEND", b""))


put("image/bad_crc.png", png(32, 32, bad_crc=True))
put("image/zero_by_zero.png", png(0, 0, rows=b""))
put("image/huge_100000x100000.png", png(100000, 100000, rows=b"\0"))
# a JPEG whose SOF0 declares 65000x65000 (3 components), with a scan header and no data
sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, 65000, 65000, 3) + b"\x01\x22\x00\x02\x11\x00\x03\x11\x00"
sos = b"\xff\xda" + struct.pack(">HB", 12, 3) + b"\x01\x00\x02\x11\x03\x11" + b"\x00\x3f\x00"
put("image/huge_65000x65000.jpg", b"\xff\xd8" + sof + sos + b"\xff\xd9")
put("image/not_an_image.jpg", "this is a text file with a .jpg name\n")
put("image/empty.png", b"")
