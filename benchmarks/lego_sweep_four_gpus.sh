#!/usr/bin/env bash
# The lego runs of issues 3 and 5 on a machine with four GPUs, in about 9 minutes, every run
# alone on its GPU. Meant to run detached (setsid) so that it outlives one device call:
#   setsid bash benchmarks/lego_sweep_four_gpus.sh WORK_DIR > WORK_DIR/suite.log 2>&1 &
# It writes logs under WORK_DIR/logs, results under WORK_DIR/res/<lane>/ (merge them with
# benchmarks/merge_results.py) and WORK_DIR/done when everything has finished.
# Issue 3's recipe (hash, 120 s, finest level 512, 4 features a level, parameters averaged with
# decay 0.99) with seeds 3 to 6, one on each GPU; issue 5's time-to-quality pair: the mlp from
# scratch for 5 minutes on GPU 1 while GPUs 0, 2 and 3 distil GPU 0's hash run into the mlp for
# 60 s, three seeds with stage 3 from the first step (--no-blockwise) at 8192 and at 16384 rays
# a step, and once with stages of 300 / 500 steps at 8192 rays (the teacher's colour head copied
# in all; 8192 was the mlp student's default when these ran).
# Pair it with: python benchmarks/time_to_quality.py --scratch-label 5min-sweep12 --distill-label
# sweep12-60s-... --tag COMMIT.
# (Earlier versions of this script, same name, ran the sweeps of commits b044f2b, c68c3e5,
# c5e297d, 7c02ed7 and f474058; at 195e1b4 two sweeps before this one, rows sweep10-* and
# sweep11-*, ran lanes of the same shape whose options each entry's command records.)
# Durations can be shortened for a dry run: T_HASH, T_MLP, T_DISTILL (seconds); LEGO names the
# scene.
set -u
# Four processes with a torch thread pool each as wide as the host overload it (the c68c3e5 runs
# ran without this cap: load average 144 on 64 cores, fewer steps in the same time).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
source "$(dirname "$0")/lanes.sh"
prepare_work "$@"
t_hash=${T_HASH:-120} t_mlp=${T_MLP:-300} t_distill=${T_DISTILL:-60}
alone="alone on its GPU; the machine's other GPUs ran other benchmarks at the same time"
recipe=(--set finest_resolution=512 --set features_per_level=4 --train-set ema_decay=0.99)

hash_run() {  # hash_run GPU SEED [train.py options...]: issue 3's recipe for T_HASH seconds
  scratch "$1" hash "$t_hash" "sweep12-f4-ema0.99-seed$2" --val-every 4000 "${recipe[@]}" \
    --train-set seed="$2" "${@:3}"
}

into_mlp() {  # into_mlp GPU NAME [distill.py options...]: hash -> mlp once GPU 0's hash is done
  wait_for hash
  hash_to_mlp "$1" "$2" --distill-set init_head_from_teacher=true --val-every 200 --label "sweep12-60s-$2" "${@:3}"
}

stage3() {  # stage3 GPU SEED RAYS: every loss from the first step, RAYS (8192 or 16384) a step
  local name=no-blockwise-seed$2
  [ "$3" = 8192 ] || name=no-blockwise-16k-seed$2
  into_mlp "$1" "$name" --distill-set blockwise=false --batch-rays "$3" --distill-set seed="$2"
}

lane() {
  case $1 in
    0) hash_run 0 3 --out "$runs/hash"; touch "$runs/hash.done"
       stage3 0 0 8192; stage3 0 1 16384
       into_mlp 0 stages300-500 --stage1-steps 300 --stage2-steps 500 --batch-rays 8192 ;;
    1) scratch 1 mlp "$t_mlp" 5min-sweep12 --val-every 200
       hash_run 1 4 ;;
    2) hash_run 2 5; stage3 2 0 16384; stage3 2 1 8192 ;;
    3) hash_run 3 6; stage3 3 2 8192; stage3 3 2 16384 ;;
  esac
}

for gpu in 0 1 2 3; do lane "$gpu" & done
wait
touch "$work/done"
grep -h "dB test PSNR\|rays a pixel\|student .* dB\|Error\|Traceback" "$logs"/*.log
