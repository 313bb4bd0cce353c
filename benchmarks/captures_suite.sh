#!/usr/bin/env bash
# The real-capture benchmarks as run on the GPU machine, one part per 10-minute device call.
# Usage: bash benchmarks/captures_suite.sh fern|fern-scratch|garden   (video and suite.tgz, the logs and
# results, under $OUT: benchmarks/pack_out.sh)
#   fern:   the hash teacher alone (120 s), then three lanes sharing the GPU: hash -> hash, vm (90 s
#           each) | hash -> grid (90 s) | hash -> mlp (180 s); then the spiral path, teacher | grid
#           student.
#   fern-scratch: vm, grid (120 s) and mlp (180 s) from scratch, sharing the GPU (MODELS="vm" runs
#           only those named).
#   garden: the hash teacher alone (270 s), then two lanes: hash -> grid (90 s) | hash -> mlp
#           (120 s, so that one call holds it all); then the ellipse path, teacher | grid student.
# The hash teachers follow the image-size recipe of lego (docs/experiments.md): a finest level of
# about 1.25 cells a pixel across the images (640 for fern's 504 pixels in NDC; 640 for garden's
# 256 pixels, whose unit cube fills half of the contracted box), 4 features a level, the
# parameter average 0.99.
# TIME_SCALE=0.05 FRAMES=2 scale every time limit and the path (a smoke test on the CPU);
# STUDENT_SCALE scales the distillations' time limits alone (when a call has less time left).
# Each lane writes its own results folder; they are merged into $OUT/res at the end. Runs that
# shared the GPU say so in their "note".
set -u
part=${1:?usage: captures_suite.sh fern|fern-scratch|garden}
out=${OUT:?set OUT}
kit=${KIT_DATA:-.device-kit/data}
runs=/tmp/pvd-runs/${part%-scratch}
size=(--train-set downscale=8)
recipe=(--set finest_resolution=640 --set features_per_level=4 --train-set ema_decay=0.99)
mkdir -p "$runs" "$out"
# Several runs share the GPU: let torch return freed blocks between their large evaluations.
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True

secs() { python3 -c "print(max(2, round($1 * ${TIME_SCALE:-1})))"; }
lane() {  # lane NAME NOTE COMMAND...: results into $out/res-NAME, output into $out/NAME.log
  local name=$1 note=$2
  shift 2
  (export PVD_RESULTS_DIR="$out/res-$name" PVD_BENCH_NOTE="$note"; "$@") >> "$out/$name.log" 2>&1
}
teacher() {  # teacher DATA SECONDS TRAIN-SETS...: the hash teacher alone on the GPU
  local data=$1 seconds=$2
  shift 2
  (export PVD_RESULTS_DIR="$out/res-teacher"
   python benchmarks/train.py --model hash --data "$data" --steps 200000 --val-every 2000 \
     --train-set time_limit_s="$(secs "$seconds")" "$@" --out "$runs/hash") > "$out/teacher.log" 2>&1
}
distil() {  # distil DATA PAIRS SECONDS: students kept in $runs/students
  python benchmarks/distill.py --data "$1" --teacher hash="$runs/hash" --pairs "$2" --time-limit "$(secs "$3 * ${STUDENT_SCALE:-1}")" \
    --keep-runs "$runs/students"
}
scratch() {  # scratch DATA MODEL SECONDS TRAIN-SETS...
  local data=$1 model=$2 seconds=$3
  shift 3
  python benchmarks/train.py --model "$model" --data "$data" --steps 200000 --val-every 2000 \
    --train-set time_limit_s="$(secs "$seconds")" "$@"
}

if [ "$part" = fern ]; then
  data=$kit/nerf_llff_data/fern
  teacher "$data" 120 "${size[@]}" "${recipe[@]}"
  lane distil-a "shared the GPU with the hash -> grid and hash -> mlp lanes" distil "$data" hash:hash,hash:vm 90 &
  lane distil-b "shared the GPU with the hash -> hash, vm and hash -> mlp lanes" distil "$data" hash:grid 90 &
  lane distil-c "shared the GPU with the hash -> hash, vm and hash -> grid lanes" distil "$data" hash:mlp 180 &
  wait
  path=spiral
elif [ "$part" = fern-scratch ]; then
  data=$kit/nerf_llff_data/fern
  models=${MODELS:-vm mlp grid}
  note="ran with ${models// /, } from scratch on one GPU${SHARED_WITH:+, alongside $SHARED_WITH}"
  for model in $models; do
    seconds=120
    [ "$model" = mlp ] && seconds=180
    lane "scratch-$model" "$note" scratch "$data" "$model" "$seconds" "${size[@]}" &
  done
  wait
  path=
else
  data=$kit/nerfstudio/garden
  teacher "$data" 270 "${recipe[@]}"
  lane distil-a "shared the GPU with the hash -> mlp lane" distil "$data" hash:grid 90 &
  lane distil-b "shared the GPU with the hash -> grid lane" distil "$data" hash:mlp 120 &
  wait
  path=ellipse
fi

if [ -n "$path" ]; then  # the frames stay on the machine; the video comes back
  python -m taichi_pvd_cli render --run "$runs/hash" --compare "$runs/students/hash-to-grid" --path "$path" \
    --frames "${FRAMES:-48}" --out "$runs/$path" > "$out/render.log" 2>&1
  cp "$runs/$path"/video.* "$out/" 2>/dev/null
fi
mkdir -p "$out/res"
for kind in train distill; do
  files=("$out"/res-*/"$kind"-*.json)
  [ -e "${files[0]}" ] && python benchmarks/merge_results.py "$out/res/$(basename "${files[0]}")" "${files[@]}"
done
grep -h "dB test PSNR\|student .* dB\|samples\|Error\|Traceback" "$out"/*.log
bash benchmarks/pack_out.sh "$out"
