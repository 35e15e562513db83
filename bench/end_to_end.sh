#!/bin/sh
# bench/end_to_end.sh — `qvlm quantize` of a synthetic real-size VLM, phase by phase.
#
#   bench/end_to_end.sh [--qvlm PATH] [--arch internvl2-8b] [--layers N] [--samples 128]
#                       [--method mbq] [--work DIR] [--launcher "mpirun -np 2 ..."] [--tag NAME]
#
# 1. `qvlm synth --arch ARCH --layers N` (random BF16 weights with the real names and shapes,
#    the whole vision tower, N decoder layers; kept in WORK and reused);
# 2. a ShareGPT4V caption file of SAMPLES items over the fixture images
#    (tests/fixtures/calib/images), each caption a different 60-word sentence;
# 3. `qvlm quantize` with MBQ W3 g128 (reweight, MAE: the MBQ reference's 8b_weight_only.yaml),
#    `dtype: auto` (the checkpoint's bfloat16), optionally under a launcher (mpirun);
# 4. prints timings.json's phases (calibration + vision, gradients, search, eval), peak RSS
#    anonymous and file-backed, the calibration batch's shape, and the search time extrapolated
#    to the full model's layer count (search per layer x layers; the other phases are measured on
#    N layers and say so).
# Output: human lines, then one JSON line starting with {"bench":"end-to-end" (for bench/README.md).
set -eu
QVLM=./build/qvlm ARCH=internvl2-8b LAYERS=1 SAMPLES=128 METHOD=mbq WORK=out/bench-e2e LAUNCH="" TAG=""
while [ $# -gt 0 ]; do
  case "$1" in
    --qvlm) QVLM=$2; shift 2 ;;
    --arch) ARCH=$2; shift 2 ;;
    --layers) LAYERS=$2; shift 2 ;;
    --samples) SAMPLES=$2; shift 2 ;;
    --method) METHOD=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --launcher) LAUNCH=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    *) echo "end_to_end.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
MODEL="$WORK/$ARCH-${LAYERS}l"
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
mkdir -p "$WORK"
if [ ! -f "$MODEL/config.json" ]; then
  t0=$(date +%s.%N)
  "$QVLM" synth --arch "$ARCH" --layers "$LAYERS" -o "$MODEL" >/dev/null
  echo "synth: $ARCH with $LAYERS LLM layers in $(calc "$(date +%s.%N) - $t0") s ($(du -sh "$MODEL" | cut -f1))"
fi
FULL_LAYERS=$("$QVLM" synth --arch "$ARCH" --dry-run 2>/dev/null | sed -n 's/.* of \([0-9]*\) decoder layers.*/\1/p')
[ -n "$FULL_LAYERS" ] || FULL_LAYERS=$LAYERS

# captions: SAMPLES items cycling over the fixture images, 60 words each, all different
CAP="$WORK/captions_$SAMPLES.json"
if [ ! -f "$CAP" ]; then
  awk -v n="$SAMPLES" 'BEGIN {
    split("grace_hopper.jpg rocket.jpg synth_500x333.jpg synth_gray_301x451.jpg", img, " ");
    split("a the small large red blue green bright dark old new wooden metal stone glass round square tall short " \
          "quiet busy city field river mountain street table window door person dog cat bird tree car boat sky " \
          "light shadow morning evening near behind under above beside holding standing sitting looking " \
          "walking painted printed framed scattered", w, " ");
    nw = 0; for (k in w) nw++;
    printf "[\n";
    for (i = 0; i < n; i++) {
      s = "";
      for (j = 0; j < 60; j++) s = s (j ? " " : "") w[1 + (i * 7 + j * j * 3 + j) % nw];
      printf "  {\"id\": \"bench-%d\", \"image\": \"%s\", \"conversations\": [" \
             "{\"from\": \"human\", \"value\": \"<image>\\nDescribe this image in detail.\"}, " \
             "{\"from\": \"gpt\", \"value\": \"%s.\"}]}%s\n", i, img[1 + i % 4], s, i + 1 < n ? "," : "";
    }
    printf "]\n";
  }' > "$CAP.tmp" && mv "$CAP.tmp" "$CAP"
fi

OUTDIR="$WORK/run-$ARCH-${LAYERS}l-$METHOD-$SAMPLES${TAG:+-$TAG}"
CFG="$WORK/$METHOD-$SAMPLES.yaml"
cat > "$CFG" <<EOF
model: internvl2
model_args: pretrained="$MODEL"
calib_data: sharegpt4v
n_samples: $SAMPLES
data_path: $CAP
image_folder: tests/fixtures/calib/images
method: $METHOD
run_process: true
w_bit: 3
w_group: 128
reweight: true
loss_mode: mae
distort: false
seed: 42
dtype: auto
scale_path: $OUTDIR
EOF
rm -rf "$OUTDIR"
t0=$(date +%s.%N)
# shellcheck disable=SC2086
$LAUNCH "$QVLM" quantize "$CFG" -o "$OUTDIR" --quiet
WALL=$(calc "$(date +%s.%N) - $t0")
T="$OUTDIR/timings.json"
num() { sed -n "s/.*\"$1\": *\([0-9.e+-]*\).*/\1/p" "$T" | head -1; }
CAL=$(num calibration) GR=$(num gradients) SE=$(num search) EV=$(num eval) TOT=$(num total)
ANON=$(num peak_rss_anon_bytes) FILEB=$(num peak_rss_file_bytes) RANKS=$(num ranks) THR=$(num threads)
PER_LAYER=$(calc "$SE / $LAYERS")
EXTRA=$(calc "$PER_LAYER * $FULL_LAYERS")
B="$OUTDIR/progress/calib_batch.safetensors"   # the batch's shape from its safetensors header
HL=$(od -An -t u8 -N8 "$B" | tr -d ' ')
SHAPE=$(tail -c +9 "$B" | head -c "$HL" | sed -n 's/.*"input_ids":{[^}]*"shape":\[\([0-9]*,[0-9]*\)\].*/\1/p')
echo "# bench end-to-end: $ARCH ($LAYERS of $FULL_LAYERS LLM layers), $METHOD W3g128 reweight, $SAMPLES samples (batch [$SHAPE]), ranks ${RANKS:-1} x threads $THR"
echo "calibration+vision $CAL s | gradients $GR s | search $SE s ($PER_LAYER s/layer) | eval $EV s | total $TOT s (wall $WALL s)"
echo "peak RSS: anonymous $(calc "$ANON / 1073741824") GiB, file-backed $(calc "$FILEB / 1073741824") GiB"
echo "search extrapolated to $FULL_LAYERS layers: $EXTRA s (search per layer x layers; calibration, gradients and eval measured on $LAYERS layers)"
printf '{"bench":"end-to-end","arch":"%s","layers":%s,"full_layers":%s,"samples":%s,"batch":"%s","method":"%s","ranks":%s,"threads":%s,"calibration":%s,"gradients":%s,"search":%s,"search_per_layer":%s,"eval":%s,"total":%s,"wall":%s,"peak_rss_anon_bytes":%s,"peak_rss_file_bytes":%s,"search_extrapolated":%s}\n' \
  "$ARCH" "$LAYERS" "$FULL_LAYERS" "$SAMPLES" "$SHAPE" "$METHOD" "${RANKS:-1}" "$THR" "$CAL" "$GR" "$SE" "$PER_LAYER" "$EV" "$TOT" "$WALL" "$ANON" "$FILEB" "$EXTRA"
