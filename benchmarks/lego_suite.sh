#!/usr/bin/env bash
# The lego benchmark suite as run on the GPU machine, in two parts that each fit one 10-minute
# device call. Usage: bash benchmarks/lego_suite.sh a|b  (writes logs and results under $OUT).
#   a: hash teacher alone (its timing is the issue-3 figure), then two lanes sharing the GPU:
#      vm and grid from scratch | hash -> grid, vm, hash distillation.
#   b: hash teacher alone, then two lanes: mlp from scratch (5 min) | hash -> mlp distillation,
#      then render speed, an orbit video and a test view of the hash run.
# Runs that shared the GPU say so in their "note".
set -u
part=${1:?usage: lego_suite.sh a|b}
lego=${LEGO:-.device-kit/data/nerf_synthetic/lego}
out=${OUT:?set OUT}
runs=/tmp/pvd-runs
mkdir -p "$runs" "$out/res"
export PVD_RESULTS_DIR="$out/res"
python benchmarks/train.py --model hash --data "$lego" --steps "${HASH_STEPS:-10000}" --val-every 2000 \
  --out "$runs/hash" > "$out/hash-$part.log" 2>&1
if [ "$part" = a ]; then
  (export PVD_BENCH_NOTE="shared the GPU with the hash->grid/vm/hash distillation lane";
   python benchmarks/train.py --model vm --data "$lego" --steps 8000 --train-set time_limit_s=180 --val-every 2000
   python benchmarks/train.py --model grid --data "$lego" --steps 10000 --train-set time_limit_s=100 --val-every 2000
  ) > "$out/scratch-a.log" 2>&1 &
  (export PVD_BENCH_NOTE="shared the GPU with the vm/grid from-scratch lane";
   python benchmarks/distill.py --data "$lego" --teacher hash="$runs/hash" --pairs hash:grid,hash:vm,hash:hash \
     --steps 3000 --stage1-steps 300 --stage2-steps 500 --time-limit 90
  ) > "$out/distill-a.log" 2>&1 &
else
  (export PVD_BENCH_NOTE="shared the GPU with the hash->mlp distillation lane";
   python benchmarks/train.py --model mlp --data "$lego" --steps 12000 --train-set time_limit_s=300 --val-every 500
  ) > "$out/scratch-b.log" 2>&1 &
  (export PVD_BENCH_NOTE="shared the GPU with the mlp from-scratch lane";
   python benchmarks/distill.py --data "$lego" --teacher hash="$runs/hash" --pairs hash:mlp \
     --steps 9400 --stage1-steps 1000 --stage2-steps 1500 --time-limit 180 --val-every 500
   python benchmarks/render_fps.py "$runs/hash" --size 400 --frames 10 --scene lego
   python -m taichi_pvd_cli render --run "$runs/hash" --path orbit --frames 36 --size 200x200 --fps 12 --out "$out/orbit"
   python -m taichi_pvd_cli eval --run "$runs/hash" --views 5
   mkdir -p "$out/testview" && cp "$runs/hash"/eval/test/000-*.png "$out/testview/"
  ) > "$out/distill-b.log" 2>&1 &
fi
wait
grep -h "dB test PSNR\|student .* dB\|Error\|Traceback" "$out"/*.log
