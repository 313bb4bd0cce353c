#!/usr/bin/env bash
# Issue 5's time-to-quality pair on a machine with four GPUs, in about 8 minutes, every run alone
# on its GPU. Meant to run detached (setsid) so that it outlives one device call:
#   setsid bash benchmarks/lego_sweep_four_gpus.sh WORK_DIR > WORK_DIR/suite.log 2>&1 &
# It writes logs under WORK_DIR/logs, results under WORK_DIR/res/<lane>/ (merge them with
# benchmarks/merge_results.py) and WORK_DIR/done when everything has finished.
# GPU 0 trains the hash teacher with issue 3's recipe (120 s, finest level 512, 4 features a
# level, parameters averaged with decay 0.99) and GPU 2 the same for 5 minutes; GPU 3 trains the
# mlp from scratch for 5 minutes. Then, 60 s each, with the mlp student's defaults (the teacher's
# colour head copied, stages of 300 / 500 steps): GPU 0 distils the 2-minute teacher with seeds
# 0-2, GPU 1 with a parameter average of decay 0.995 (seeds 0, 1) and with 32-step label blocks;
# GPUs 2 and 3 distil the 5-minute teacher (defaults; average 0.995).
# Pair it with: python benchmarks/time_to_quality.py --scratch-label 5min-sweep18 --distill-label
# sweep18-60s-defaults-seed0 ... --tag COMMIT.
# (This script ran at b9e181a, whose mlp student drew labels 8 steps at a time; earlier versions
# of it, same name, ran the sweeps of b044f2b, c68c3e5, c5e297d, 7c02ed7, f474058, 195e1b4 and
# 1cb7383, and calls of the same shape at 106a892, 6834f30 and 24529fd ran the rows sweep13-*,
# sweep14-*, sweep16-* and sweep17-*, whose options each entry's command records.) Durations can
# be shortened for a dry run: T_HASH, T_MLP (seconds); LEGO names the scene.
set -u
# Four processes with a torch thread pool each as wide as the host overload it.
export OMP_NUM_THREADS=4
source "$(dirname "$0")/lanes.sh"
prepare_work "$@"
t_hash=${T_HASH:-120} t_mlp=${T_MLP:-300} t_distill=60
alone="alone on its GPU; the machine's other GPUs ran other benchmarks at the same time"
recipe=(--distill-set init_head_from_teacher=true --stage1-steps 300 --stage2-steps 500 --val-every 200 --steps 60000)
hash_recipe=(--val-every 4000 --set finest_resolution=512 --set features_per_level=4 --train-set ema_decay=0.99)

tq() {  # tq GPU NAME SEED [distill.py options...]: hash -> mlp from runs/hash
  wait_for hash
  hash_to_mlp "$1" "$2-seed$3" "${recipe[@]}" --label "sweep18-${t_distill}s-$2-seed$3" --distill-set seed="$3" "${@:4}"
}
tq300() {  # tq300 GPU NAME SEED [distill.py options...]: hash -> mlp from runs/hash300
  wait_for hash300
  teacher_run=hash300 hash_to_mlp "$1" "teacher300-$2-seed$3" "${recipe[@]}" \
    --label "sweep18-${t_distill}s-teacher300-$2-seed$3" --distill-set seed="$3" "${@:4}"
}

lane() {
  case $1 in
    0) scratch 0 hash "$t_hash" sweep18-f4-ema0.99 "${hash_recipe[@]}" --out "$runs/hash"
       touch "$runs/hash.done"
       tq 0 defaults 0; tq 0 defaults 1; tq 0 defaults 2 ;;
    1) tq 1 ema0.995 0 --distill-set ema_decay=0.995; tq 1 ema0.995 1 --distill-set ema_decay=0.995
       tq 1 block32 0 --distill-set label_block_steps=32 ;;
    2) scratch 2 hash "$t_mlp" sweep18-5min-f4-ema0.99 "${hash_recipe[@]}" --out "$runs/hash300"
       touch "$runs/hash300.done"
       tq300 2 defaults 0 ;;
    3) scratch 3 mlp "$t_mlp" 5min-sweep18 --val-every 200
       tq300 3 ema0.995 0 --distill-set ema_decay=0.995 ;;
  esac
}

for gpu in 0 1 2 3; do lane "$gpu" & done
wait
touch "$work/done"
