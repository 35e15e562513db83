#!/usr/bin/env python3
"""Copy selected tensors of a safetensors file into a smaller one, optionally keeping only the
first N entries along dimension 0 (so goldens stay small in tests/fixtures/).

usage: fixture_slice.py SRC DST KEY[:N][=NEWNAME] ...
       KEY may end in '*' to select every tensor with that prefix.
Pure Python (struct + json): no numpy needed. Writes the reference layout (dtype order, then
name; header padded with spaces to a multiple of 8; metadata {"format": "pt"}).
"""
import json, struct, sys

ORDER = ["U64", "I64", "F64", "F32", "U32", "I32", "BF16", "F16", "U16", "I16", "F8_E8M0",
         "F8_E4M3", "F8_E5M2", "I8", "U8", "BOOL"]
SIZE = {"U64": 8, "I64": 8, "F64": 8, "F32": 4, "U32": 4, "I32": 4, "BF16": 2, "F16": 2, "U16": 2,
        "I16": 2, "F8_E8M0": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1, "U8": 1, "BOOL": 1}

def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    hdr.pop("__metadata__", None)
    return hdr, data

def write(path, tensors):
    items = sorted(tensors.items(), key=lambda kv: (ORDER.index(kv[1][0]), kv[0].encode()))
    off, header, blobs = 0, {"__metadata__": {"format": "pt"}}, []
    for name, (dt, shape, raw) in items:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

def main(argv):
    src, dst, specs = argv[1], argv[2], argv[3:]
    hdr, data = read(src)
    out = {}
    for spec in specs:
        rename = None
        if "=" in spec:
            spec, rename = spec.split("=", 1)
        rows = None
        if ":" in spec:
            spec, rows = spec.rsplit(":", 1)
            rows = int(rows)
        keys = [k for k in hdr if k.startswith(spec[:-1])] if spec.endswith("*") else [spec]
        for k in keys:
            e = hdr[k]
            a, b = e["data_offsets"]
            raw, shape = data[a:b], list(e["shape"])
            if rows is not None and shape and rows < shape[0]:
                per = (b - a) // shape[0]
                raw, shape = raw[: rows * per], [rows] + shape[1:]
            out[rename or k] = (e["dtype"], shape, raw)
    write(dst, out)

if __name__ == "__main__":
    main(sys.argv)
