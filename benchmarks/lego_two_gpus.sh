#!/usr/bin/env bash
# The lego benchmarks of issues 3-5 on a machine with two GPUs, in about 23 minutes: every
# from-scratch run alone on its GPU, the distillations after them. Meant to run detached (setsid)
# so that it outlives one device call:
#   setsid bash benchmarks/lego_two_gpus.sh WORK_DIR > WORK_DIR/suite.log 2>&1 &
# It writes logs under WORK_DIR/logs, results under WORK_DIR/res/<lane>/ (merge them with
# benchmarks/merge_results.py) and WORK_DIR/done when everything has finished.
#   GPU 0: hash (2 min, issue 3), vm (5 min, issue 4); then distillations into vm and grid
#          (hash, vm and mlp teachers), vm -> mlp, and half of the vm -> mlp ablation (issue 5).
#   GPU 1: grid (2 min) with two total-variation weights (issue 4), mlp (5 min, the from-scratch
#          side of the time-to-quality plot); then hash -> mlp (its other side), mlp -> mlp, the
#          other half of the ablation, and grid with 16384 rays a step.
# Durations can be shortened for a dry run: T_HASH, T_VM, T_GRID, T_MLP, T_DISTILL,
# T_DISTILL_MLP (seconds), STEPS_DISTILL, STEPS_DISTILL_MLP, STEPS_ABLATION, BATCH_RAYS (rays a
# step, all runs); LEGO names the scene folder.
set -u
source "$(dirname "$0")/lanes.sh"
prepare_work "$@"
t_hash=${T_HASH:-120} t_vm=${T_VM:-300} t_grid=${T_GRID:-120} t_mlp=${T_MLP:-300}
t_distill=${T_DISTILL:-85} t_distill_mlp=${T_DISTILL_MLP:-170}
steps_distill=${STEPS_DISTILL:-5500} steps_distill_mlp=${STEPS_DISTILL_MLP:-15000}
steps_ablation=${STEPS_ABLATION:-5000}
alone="alone on its GPU; the machine's other H100 ran another benchmark at the same time"

distill() {  # distill GPU NAME PAIRS [distill.py options...]: one process, the pairs in turn
  local gpu=$1 name=$2 pairs=$3
  shift 3
  CUDA_VISIBLE_DEVICES=$gpu PVD_RESULTS_DIR=$work/res/gpu$gpu-$name PVD_BENCH_NOTE=$alone \
    python benchmarks/distill.py --data "$lego" --teacher hash="$runs/hash" --teacher vm="$runs/vm" \
      --teacher mlp="$runs/mlp" --pairs "$pairs" --val-every 500 --test-views "$views" \
      ${BATCH_RAYS:+--batch-rays "$BATCH_RAYS"} "$@" > "$logs/gpu$gpu-$name.log" 2>&1
}

fast=(--steps "$steps_distill" --stage1-steps 300 --stage2-steps 500 --time-limit "$t_distill")
into_mlp=(--steps "$steps_distill_mlp" --stage1-steps 1000 --stage2-steps 1500 --time-limit "$t_distill_mlp")
ablation=(--steps "$steps_ablation" --stage1-steps 500 --stage2-steps 800 --label ablation-5k)

(
  scratch 0 hash "$t_hash" 2min --val-every 2000 --out "$runs/hash"; touch "$runs/hash.done"
  scratch 0 vm "$t_vm" 5min --val-every 2000 --out "$runs/vm"; touch "$runs/vm.done"
  distill 0 into-vm-grid hash:vm,hash:grid,vm:vm,vm:grid "${fast[@]}"
  wait_for mlp
  distill 0 mlp-into-grid mlp:grid "${fast[@]}"
  distill 0 vm-into-mlp vm:mlp "${into_mlp[@]}"
  distill 0 ablation-a vm:mlp --variant no-feature-loss --variant no-density-clip "${ablation[@]}"
) &
(
  scratch 1 grid "$t_grid" 2min-tv1e-4 --val-every 5000 --set tv_density_weight=1e-4 --set tv_sh_weight=1e-4
  scratch 1 grid "$t_grid" 2min-tv5e-5 --val-every 5000 --set tv_density_weight=5e-5 --set tv_sh_weight=5e-5
  scratch 1 mlp "$t_mlp" 5min --val-every 500 --out "$runs/mlp"; touch "$runs/mlp.done"
  wait_for hash
  distill 1 into-mlp hash:mlp,mlp:mlp "${into_mlp[@]}"
  wait_for vm
  distill 1 ablation-b vm:mlp --variant all --variant no-blockwise "${ablation[@]}"
  scratch 1 grid "$t_grid" 2min-tv1e-4-16k --val-every 5000 --batch-rays 16384 \
    --set tv_density_weight=1e-4 --set tv_sh_weight=1e-4
) &
wait
touch "$work/done"
grep -h "dB test PSNR\|student .* dB\|snapshot at\|Error\|Traceback" "$logs"/*.log
