#!/usr/bin/env bash
# Issue 5's time-to-quality pair on a machine with four GPUs, in about 8 minutes, every run alone
# on its GPU. Meant to run detached (setsid) so that it outlives one device call:
#   setsid bash benchmarks/lego_sweep_four_gpus.sh WORK_DIR > WORK_DIR/suite.log 2>&1 &
# It writes logs under WORK_DIR/logs, results under WORK_DIR/res/<lane>/ (merge them with
# benchmarks/merge_results.py) and WORK_DIR/done when everything has finished.
# GPU 0 trains the hash teacher with issue 3's recipe (120 s, finest level 512, 4 features a
# level, parameters averaged with decay 0.99); GPU 3 trains the mlp from scratch for 5 minutes.
# Then, 60 s each, hash -> mlp with the mlp student's defaults (the teacher's colour head copied,
# stages of 300 / 500 steps): seeds 0-4; beside them the learning rates 3e-3 (seeds 0-2) and
# 1.5e-3 (seeds 0, 2).
# Pair it with: python benchmarks/time_to_quality.py --scratch-label 5min-sweep22 --distill-label
# sweep22-60s-defaults-seed0 ... --tag COMMIT.
# (Earlier versions of this script, same name, ran the sweeps of b044f2b, c68c3e5, c5e297d,
# 7c02ed7, f474058, 195e1b4, 1cb7383 and b9e181a, and calls of the same shape at 106a892, 6834f30,
# 24529fd, 0bb0071 and d58b3d4 ran the rows sweep13-*, sweep14-*, sweep16-*, sweep17-*, sweep20-*
# and sweep21-*, whose options each entry's command records.) Durations can be shortened for a
# dry run: T_HASH, T_MLP (seconds); LEGO names the scene.
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
  hash_to_mlp "$1" "$2-seed$3" "${recipe[@]}" --label "sweep22-${t_distill}s-$2-seed$3" --distill-set seed="$3" "${@:4}"
}

lane() {
  case $1 in
    0) scratch 0 hash "$t_hash" sweep22-f4-ema0.99 "${hash_recipe[@]}" --out "$runs/hash"
       touch "$runs/hash.done"
       tq 0 defaults 0; tq 0 lr3e-3 0 --distill-set lr=3e-3; tq 0 defaults 4 ;;
    1) tq 1 defaults 1; tq 1 lr3e-3 1 --distill-set lr=3e-3; tq 1 lr1.5e-3 0 --distill-set lr=1.5e-3 ;;
    2) tq 2 defaults 2; tq 2 lr3e-3 2 --distill-set lr=3e-3; tq 2 lr1.5e-3 2 --distill-set lr=1.5e-3 ;;
    3) scratch 3 mlp "$t_mlp" 5min-sweep22 --val-every 200
       tq 3 defaults 3 ;;
  esac
}

for gpu in 0 1 2 3; do lane "$gpu" & done
wait
touch "$work/done"
