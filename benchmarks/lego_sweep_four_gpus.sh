#!/usr/bin/env bash
# Issue 5's time-to-quality pair on a machine with four GPUs, in about 8 minutes, every run alone
# on its GPU. Meant to run detached (setsid) so that it outlives one device call:
#   setsid bash benchmarks/lego_sweep_four_gpus.sh WORK_DIR > WORK_DIR/suite.log 2>&1 &
# It writes logs under WORK_DIR/logs, results under WORK_DIR/res/<lane>/ (merge them with
# benchmarks/merge_results.py) and WORK_DIR/done when everything has finished.
# GPU 0 trains the hash teacher with issue 3's recipe (120 s, finest level 512, 4 features a
# level, parameters averaged with decay 0.99); GPU 1 trains the mlp from scratch for 5 minutes;
# GPUs 0, 2 and 3 distil the teacher into the mlp with the student's defaults (the teacher's
# colour head copied, stages of 300 / 500 steps) for 60 s with seeds 0-3, in float32 with seeds
# 0-2 (--distill-set mixed_precision=false) and once for 170 s; GPU 1 adds seed 4 after its run.
# Pair it with: python benchmarks/time_to_quality.py --scratch-label 5min-sweep15 --distill-label
# sweep15-60s-bf16-seed0 ... --distill-label sweep15-170s-bf16-seed0 --tag COMMIT.
# (This script ran at 1cb7383, whose mlp trained and distilled in bfloat16; earlier versions of
# it, same name, ran the sweeps of b044f2b, c68c3e5, c5e297d, 7c02ed7, f474058 and 195e1b4, and
# calls of the same shape at 106a892 and 6834f30 ran the rows sweep13-* and sweep14-*, whose
# options each entry's command records.) Durations can be shortened for a dry run: T_HASH, T_MLP
# (seconds); LEGO names the scene.
set -u
# Four processes with a torch thread pool each as wide as the host overload it (the c68c3e5 runs
# ran without this cap: load average 144 on 64 cores, fewer steps in the same time).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
source "$(dirname "$0")/lanes.sh"
prepare_work "$@"
t_hash=${T_HASH:-120} t_mlp=${T_MLP:-300} t_distill=60
alone="alone on its GPU; the machine's other GPUs ran other benchmarks at the same time"

into_mlp() {  # into_mlp GPU PRECISION SEED [distill.py options...]: hash -> mlp once GPU 0's hash is done
  wait_for hash
  hash_to_mlp "$1" "$2-seed$3" --distill-set init_head_from_teacher=true --stage1-steps 300 --stage2-steps 500 \
    --val-every 200 --label "sweep15-${t_distill}s-$2-seed$3" --distill-set seed="$3" "${@:4}"
}
fp32=(--distill-set mixed_precision=false)

lane() {
  case $1 in
    0) scratch 0 hash "$t_hash" sweep15-f4-ema0.99-seed3 --val-every 4000 --set finest_resolution=512 \
         --set features_per_level=4 --train-set ema_decay=0.99 --train-set seed=3 --out "$runs/hash"
       touch "$runs/hash.done"
       into_mlp 0 bf16 0; into_mlp 0 fp32 0 "${fp32[@]}"; into_mlp 0 bf16 3 ;;
    1) scratch 1 mlp "$t_mlp" 5min-sweep15 --val-every 200
       into_mlp 1 bf16 4 ;;
    2) into_mlp 2 bf16 1; into_mlp 2 fp32 1 "${fp32[@]}"; into_mlp 2 fp32 2 "${fp32[@]}" ;;
    3) into_mlp 3 bf16 2; t_distill=170 into_mlp 3 bf16 0 ;;
  esac
}

for gpu in 0 1 2 3; do lane "$gpu" & done
wait
touch "$work/done"
grep -h "dB test PSNR\|student .* dB\|Error\|Traceback" "$logs"/*.log
