#!/usr/bin/env python3
"""Writes tests/fixtures/goldens/export/pickled_by_python.pt: a torch.save-layout archive whose
data.pkl comes from CPython's own pickle.Pickler (protocol 2) with torch's conventions -- persistent
ids ('storage', torch.<Type>Storage, key, 'cpu', numel) and torch._utils._rebuild_tensor_v2 with an
OrderedDict of backward hooks -- so that the C reader is tested on a pickler it did not write.
Needs only numpy; torch itself is imitated by a stub package. Archive prefix "scales/" (torch names
it after the file), storages shared between tensors, one offset view and one strided view.

usage: make_torch_like_pt.py OUT.pt"""
import collections, io, os, pickle, sys, tempfile, zipfile

import numpy as np

STUB = '''
class _S:
    def __init__(self, arr): self.arr = arr
class FloatStorage(_S): pass
class BFloat16Storage(_S): pass
'''
UTILS = '''
def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, metadata=None):
    raise RuntimeError("stub")
'''


def main(out):
    d = tempfile.mkdtemp()
    os.makedirs(os.path.join(d, "torch"))
    open(os.path.join(d, "torch", "__init__.py"), "w").write(STUB)
    open(os.path.join(d, "torch", "_utils.py"), "w").write(UTILS)
    sys.path.insert(0, d)
    import torch
    import torch._utils

    class View:
        def __init__(self, st, off, shape, stride):
            self.st, self.off, self.shape, self.stride = st, off, shape, stride

        def __reduce_ex__(self, proto):
            return (torch._utils._rebuild_tensor_v2,
                    (self.st, self.off, self.shape, self.stride, False, collections.OrderedDict()))

    storages = {}

    class P(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, torch._S):
                for k, s in storages.items():
                    if s is o:
                        return ("storage", type(o), k, "cpu", o.arr.size)
                key = str(len(storages))
                storages[key] = o
                return ("storage", type(o), key, "cpu", o.arr.size)
            return None

    base = torch.FloatStorage(np.arange(12, dtype=np.float32) * 0.25)
    bf = torch.BFloat16Storage(np.array([0x3f80, 0x4000, 0xbf80, 0x3e80], dtype=np.uint16))
    obj = {"scale": [("model.layers.0.input_layernorm",
                      ("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj"), View(bf, 0, (4,), (1,))),
                     ("model.layers.0.mlp.up_proj", ("model.layers.0.mlp.down_proj",), View(base, 2, (3,), (1,)))],
           "clip": [("model.layers.0.mlp.down_proj", View(base, 0, (2, 3, 1), (1, 2, 1)))],
           "step": 70000, "neg": -5, "big": 2 ** 40, "f": 1.5, "none": None, "t": True}
    buf = io.BytesIO()
    P(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("scales/data.pkl", buf.getvalue())
        z.writestr("scales/byteorder", "little")
        for k, s in storages.items():
            z.writestr("scales/data/" + k, s.arr.tobytes())
        z.writestr("scales/version", "3\n")


if __name__ == "__main__":
    main(sys.argv[1])
