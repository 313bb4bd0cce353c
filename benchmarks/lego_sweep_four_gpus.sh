#!/usr/bin/env bash
# The lego runs of issues 3 and 5 on a machine with four GPUs, in about 9 minutes, every run
# alone on its GPU. Meant to run detached (setsid) so that it outlives one device call:
#   setsid bash benchmarks/lego_sweep_four_gpus.sh WORK_DIR > WORK_DIR/suite.log 2>&1 &
# It writes logs under WORK_DIR/logs, results under WORK_DIR/res/<lane>/ (merge them with
# benchmarks/merge_results.py) and WORK_DIR/done when everything has finished.
#   GPU 0: hash 2 min, finest hash resolution 512 (issue 3's baseline and the teacher), then
#          hash -> mlp (60 s) with the teacher's colour head copied into the student, with the
#          stages of the time-to-quality run (1000 / 1500 steps) and with short ones (300 / 500).
#   GPU 1: mlp from scratch (5 min), then hash -> mlp (60 s, colour head copied, short stages):
#          the two sides of the time-to-quality plot, one after the other on one card (issue 5).
#   GPU 2: hash 2 min (finest 512) rendering with the parameters' moving average, decay 0.95
#          (Instant-NGP's) and 0.99; then a hash table of 2^21 entries a level.
#   GPU 3: the baseline and decay 0.95 again with a second seed; then decay 0.95 with 2^21 entries.
# (Earlier versions of this script, same name, ran the sweeps of commits b044f2b and c68c3e5.)
# Durations can be shortened for a dry run: T_HASH, T_MLP, T_DISTILL (seconds); LEGO names the
# scene.
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

into_mlp() {  # into_mlp GPU NAME [distill.py options...]: hash -> mlp from GPU 0's hash
  local gpu=$1 name=$2
  shift 2
  wait_for hash
  CUDA_VISIBLE_DEVICES=$gpu PVD_RESULTS_DIR=$work/res/gpu$gpu-distill-$name PVD_BENCH_NOTE=$alone \
    python benchmarks/distill.py --data "$lego" --teacher hash="$runs/hash" --pairs hash:mlp \
      --steps 15000 --time-limit "$t_distill" --val-every 500 --test-views "$views" "$@" \
      > "$logs/gpu$gpu-distill-$name.log" 2>&1
}

hash512() {  # hash512 GPU LABEL [train.py options...]: hash for T_HASH seconds, finest level 512
  scratch "$1" hash "$t_hash" "$2" --val-every 4000 --set finest_resolution=512 "${@:3}"
}

head_copied=(--distill-set init_head_from_teacher=true)
short=(--stage1-steps 300 --stage2-steps 500)

lane() {
  case $1 in
    0) hash512 0 sweep3-finest-512 --out "$runs/hash"; touch "$runs/hash.done"
       into_mlp 0 head --stage1-steps 1000 --stage2-steps 1500 "${head_copied[@]}" --label sweep-60s-head
       into_mlp 0 head-short "${short[@]}" "${head_copied[@]}" --label sweep-60s-head-short-stages ;;
    1) scratch 1 mlp "$t_mlp" 5min-sweep3 --val-every 500
       into_mlp 1 time-to-quality "${short[@]}" "${head_copied[@]}" --label time-to-quality-head ;;
    2) hash512 2 sweep3-ema-0.95 --train-set ema_decay=0.95
       hash512 2 sweep3-ema-0.99 --train-set ema_decay=0.99
       hash512 2 sweep3-table-2e21 --set log2_table_size=21 ;;
    3) hash512 3 sweep3-finest-512-seed-1 --train-set seed=1
       hash512 3 sweep3-ema-0.95-seed-1 --train-set ema_decay=0.95 --train-set seed=1
       hash512 3 sweep3-ema-0.95-table-2e21 --train-set ema_decay=0.95 --set log2_table_size=21 ;;
  esac
}

for gpu in 0 1 2 3; do lane "$gpu" & done
wait
touch "$work/done"
grep -h "dB test PSNR\|rays a pixel\|student .* dB\|Error\|Traceback" "$logs"/*.log
