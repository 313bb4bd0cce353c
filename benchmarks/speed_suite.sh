#!/usr/bin/env bash
# Where the time goes on the GPU machine, in one device call (about 9 minutes): kernel
# throughput, the hash training step profiled (benchmarks/profile_train.py), short lego runs of
# the four architectures scored on 20 test views (benchmarks/train.py), a rendered hash frame
# profiled (benchmarks/profile_render.py: as rendered, in one chunk, with every marched sample's
# density evaluated) and the frames a second of all four at 400x400 and 800x800
# (benchmarks/render_fps.py), then the CUDA test set. Each stage has its own time limit, and
# $OUT/suite.tgz (logs/ and res/, unpack with `tar xzf suite.tgz`) is rewritten after each, so
# a call cut short still brings back what ran.
# Usage: bash benchmarks/speed_suite.sh   (LEGO names the scene; TIME_SCALE=0.05 scales the
# runs' and the stages' time limits, for a smoke test of the plumbing on the CPU). The CUDA test
# set needs pytest on the machine (the device kit's test wheels, installed beside taichi).
set -u
out=${OUT:?set OUT}
lego=${LEGO:-.device-kit/data/nerf_synthetic/lego}
work=/tmp/pvd-speed-suite
runs=$work/runs
logs=$work/logs
mkdir -p "$runs" "$logs" "$work/res"
secs() { python3 -c "print(max(2, round($1 * ${TIME_SCALE:-1})))"; }
pack() { tar czf /tmp/speed-suite.tgz -C "$work" logs res && cp /tmp/speed-suite.tgz "$out/suite.tgz"; }
stage() {  # stage NAME LIMIT COMMAND...: run with a time limit, log it, pack what there is
  local name=$1 limit=$2
  shift 2
  timeout "$(secs "$limit")" "$@" > "$logs/$name.log" 2>&1
  echo "$name: exit $?"
  pack
}
hash_recipe=(--set finest_resolution=512 --set features_per_level=4)

stage kernels 100 python benchmarks/kernels.py --out-dir "$work/res"
stage profile-train-hash 50 python benchmarks/profile_train.py --data "$lego" --model hash "${hash_recipe[@]}" --steps 100
stage profile-train-hash-run8 50 python benchmarks/profile_train.py --data "$lego" --model hash "${hash_recipe[@]}" --steps 100 \
  --hash-points-a-thread 8
stage train-hash 100 python benchmarks/train.py --data "$lego" --model hash --out "$runs/hash" --steps 200000 \
  --time-limit "$(secs 40)" "${hash_recipe[@]}" --train-set ema_decay=0.99 --val-every 0 --test-views 20 --out-dir "$work/res"
for model in grid vm mlp; do
  stage "train-$model" 85 python benchmarks/train.py --data "$lego" --model "$model" --out "$runs/$model" --steps 200000 \
    --time-limit "$(secs 30)" --val-every 0 --test-views 20 --out-dir "$work/res"
done
stage profile-render-hash 40 python benchmarks/profile_render.py "$runs/hash"
stage profile-render-hash-one-chunk 40 python benchmarks/profile_render.py "$runs/hash" --chunk 262144
stage profile-render-hash-one-round 40 python benchmarks/profile_render.py "$runs/hash" --density-rounds none
for size in 400 800; do
  stage "render-fps-$size" 60 python benchmarks/render_fps.py "$runs"/hash "$runs"/grid "$runs"/vm "$runs"/mlp \
    --size "$size" --scene lego --out-dir "$work/res/fps-$size"
done
stage cuda-tests 120 python benchmarks/cuda_tests.py --out-dir "$work/res"
