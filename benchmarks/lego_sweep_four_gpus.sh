#!/usr/bin/env bash
# The lego runs of issues 3 and 5 on a machine with four GPUs, in about 9 minutes, every run
# alone on its GPU. Meant to run detached (setsid) so that it outlives one device call:
#   setsid bash benchmarks/lego_sweep_four_gpus.sh WORK_DIR > WORK_DIR/suite.log 2>&1 &
# It writes logs under WORK_DIR/logs, results under WORK_DIR/res/<lane>/ (merge them with
# benchmarks/merge_results.py) and WORK_DIR/done when everything has finished.
#   GPU 0: mlp from scratch (5 min), then hash -> mlp (60 s) from GPU 1's hash: the two sides
#          of the time-to-quality plot, one after the other on one card (issue 5).
#   GPU 1: hash 2 min with finest hash resolution 1024 (issue 3; the teacher), then the same
#          with rays through random points of their pixels (pixel_jitter).
#   GPU 2: hash 2 min with finest resolution 768, then 1024 with pixel jitter and lr 2e-2.
#   GPU 3: hash -> mlp variants (60 s): short stages (300 / 500 steps), 8192 rays a step.
# Each hash run is also scored with 2x2 rays per pixel. (The sweep of commit b044f2b, same
# name, ran the first recipe variants.) Durations can be shortened for a dry run: T_HASH, T_MLP,
# T_DISTILL (seconds); LEGO names the scene.
set -u
# Four processes with a torch thread pool each as wide as the host overload it (the c68c3e5 runs
# ran without this cap: load average 144 on 64 cores, fewer steps in the same time).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
work=${1:?usage: lego_sweep_four_gpus.sh WORK_DIR}
lego=${LEGO:-.device-kit/data/nerf_synthetic/lego}
t_hash=${T_HASH:-120} t_mlp=${T_MLP:-300} t_distill=${T_DISTILL:-60}
views=${TEST_VIEWS:-50}
runs=$work/runs logs=$work/logs
mkdir -p "$runs" "$logs" "$work/res"
alone="alone on its GPU; the machine's other GPUs ran other benchmarks at the same time"

source "$(dirname "$0")/lanes.sh"

into_mlp() {  # into_mlp GPU NAME [distill.py options...]: hash -> mlp from GPU 1's hash
  local gpu=$1 name=$2
  shift 2
  wait_for hash
  CUDA_VISIBLE_DEVICES=$gpu PVD_RESULTS_DIR=$work/res/gpu$gpu-distill-$name PVD_BENCH_NOTE=$alone \
    python benchmarks/distill.py --data "$lego" --teacher hash="$runs/hash" --pairs hash:mlp \
      --steps 15000 --time-limit "$t_distill" --val-every 500 --test-views "$views" "$@" \
      > "$logs/gpu$gpu-distill-$name.log" 2>&1
}

hash2() {  # hash2 GPU LABEL [train.py options...]: hash for T_HASH seconds, also scored at 2x2
  scratch "$1" hash "$t_hash" "$2" --val-every 2000 --supersample 2 "${@:3}"
}

lane() {
  case $1 in
    0) scratch 0 mlp "$t_mlp" 5min --val-every 500
       into_mlp 0 time-to-quality --stage1-steps 1000 --stage2-steps 1500 ;;
    1) hash2 1 2min --set finest_resolution=1024 --out "$runs/hash"; touch "$runs/hash.done"
       hash2 1 sweep-finest-1024-jitter --set finest_resolution=1024 --train-set pixel_jitter=true ;;
    2) hash2 2 sweep-finest-768 --set finest_resolution=768
       hash2 2 sweep-finest-1024-jitter-lr2e-2 --set finest_resolution=1024 --train-set pixel_jitter=true --lr 2e-2 ;;
    3) into_mlp 3 short-stages --stage1-steps 300 --stage2-steps 500 --label sweep-60s-short-stages
       into_mlp 3 8k-rays --stage1-steps 1000 --stage2-steps 1500 --batch-rays 8192 --label sweep-60s-8k-rays ;;
  esac
}

for gpu in 0 1 2 3; do lane "$gpu" & done
wait
touch "$work/done"
grep -h "dB test PSNR\|rays a pixel\|student .* dB\|Error\|Traceback" "$logs"/*.log
