#!/bin/sh
# The embedded demo (README, command 1): a complete MBQ W3 quantization of the tiny InternVL2
# model the repository ships — calibration on its four image-caption pairs, the gradient pass,
# the layer-by-layer search, the quantized model's loss next to the full-precision one, a
# compressed-tensors export checked by read-back — then the kernel micro-benchmarks.
set -eu
cd "$(dirname "$0")/.."
MODEL=tests/fixtures/models/internvl2-internlm2-tiny
OUT=out/demo/internvl2-mbq-w3g128
rm -rf out/demo   # a fresh run (a re-run of quantize would resume from out/demo/.../progress)
echo "== qvlm inspect $MODEL"
./build/qvlm inspect "$MODEL"
echo "== qvlm quantize configs/demo/internvl2-mbq-w3g128.yaml   (MBQ W3 g128, reweighted, 4 calibration pairs)"
./build/qvlm quantize configs/demo/internvl2-mbq-w3g128.yaml
echo "== qvlm verify $OUT-ct   (unpack the export and compare with the fake-quantized weights)"
./build/qvlm verify "$OUT-ct" --against "$MODEL" --scales "$OUT"
echo "== results"
echo "   scales and search log: $OUT/{scales.safetensors,search.json}"
echo "   calibration loss:      $(cat "$OUT/eval.json")"
echo "   quantized checkpoint:  $OUT-ct (compressed-tensors pack-quantized W3A16)"
echo "== qvlm --print-isa"
./build/qvlm --print-isa
echo "== qvlm bench kernels --quick   (GB/s vs memcpy and vs the scalar reference; see bench/README.md)"
./build/qvlm bench kernels --quick
