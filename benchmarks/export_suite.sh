#!/usr/bin/env bash
# Exports of all four architectures on lego as run on the GPU machine (one device call):
# a hash teacher (60 s), its vm, grid (20 s each, sharing the GPU) and mlp (30 s) students, then
# benchmarks/export.py (mesh, point cloud and volume export times, vertex counts, each student's
# Chamfer distance to the teacher's mesh), and the teacher's mesh at 256 for the README picture.
# Usage: bash benchmarks/export_suite.sh   (the teacher's mesh and suite.tgz, the logs and results,
# under $OUT: benchmarks/pack_out.sh)
# TIME_SCALE=0.05 scales every time limit (a smoke test on the CPU).
set -u
out=${OUT:?set OUT}
lego=${LEGO:-.device-kit/data/nerf_synthetic/lego}
runs=/tmp/pvd-runs/export
mkdir -p "$runs" "$out/res"
# The short runs' own train/distill records stay out of the results folder (they are not the
# lego training and distillation benchmarks); only the export record goes to $out/res.
export PVD_RESULTS_DIR="$out/runs-records"
secs() { python3 -c "print(max(2, round($1 * ${TIME_SCALE:-1})))"; }
distil() {  # distil PAIRS SECONDS [--distill-set ...]
  local pairs=$1 seconds=$2
  shift 2
  python benchmarks/distill.py --data "$lego" --teacher hash="$runs/hash" --pairs "$pairs" \
    --time-limit "$(secs "$seconds")" --keep-runs "$runs" --test-views 10 --label export "$@"
}
python benchmarks/train.py --model hash --data "$lego" --steps 200000 --val-every 2000 --test-views 10 \
  --set finest_resolution=512 --set features_per_level=4 --train-set ema_decay=0.99 \
  --train-set time_limit_s="$(secs 60)" --label export --out "$runs/hash" > "$out/teacher.log" 2>&1
(export PVD_RESULTS_DIR="$out/runs-records/vm" PVD_BENCH_NOTE="shared the GPU with the hash -> grid lane"
 distil hash:vm 20) > "$out/distil-vm.log" 2>&1 &
(export PVD_RESULTS_DIR="$out/runs-records/grid" PVD_BENCH_NOTE="shared the GPU with the hash -> vm lane"
 distil hash:grid 20) > "$out/distil-grid.log" 2>&1 &
wait
distil hash:mlp 30 --distill-set init_head_from_teacher=true > "$out/distil-mlp.log" 2>&1
python benchmarks/export.py "$runs/hash" "$runs/hash-to-vm" "$runs/hash-to-grid" "$runs/hash-to-mlp" \
  --scene lego --out-dir "$out/res" > "$out/export.log" 2>&1
python -m taichi_pvd_cli export --run "$runs/hash" --format mesh --resolution 256 --out "$out/lego-hash-256.ply" \
  >> "$out/export.log" 2>&1
grep -h "dB test PSNR\|student .* dB\|chamfer\|export\|Error\|Traceback" "$out"/*.log
bash benchmarks/pack_out.sh "$out"
