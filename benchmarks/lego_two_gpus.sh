#!/usr/bin/env bash
# The from-scratch and distillation benchmarks of vm, grid and mlp on lego, on a machine with two
# GPUs, in about 22 minutes. Meant to run detached (setsid) so that it outlives one device call:
#   setsid bash benchmarks/lego_two_gpus.sh WORK_DIR > WORK_DIR/suite.log 2>&1 &
# It writes logs under WORK_DIR/logs, results under WORK_DIR/res/<lane>/ (merge them with
# benchmarks/merge_results.py) and WORK_DIR/done when everything has finished.
#   GPU 1, alone: mlp from scratch for 20 minutes, kept at 5 and 10 minutes (issue 4).
#   GPU 0: vm (5 min), grid (2 min) and mlp (5 min) from scratch, each alone on the card
#          (issue 4), then the nine distillations among them in two lanes sharing the card
#          (issue 5): into vm and grid | into mlp.
# Durations can be shortened for a dry run: T_VM, T_GRID, T_MLP, T_MLP_LONG, T_DISTILL,
# T_DISTILL_MLP (seconds), BATCH_RAYS (rays a step, all runs); LEGO names the scene folder.
set -u
work=${1:?usage: lego_two_gpus.sh WORK_DIR}
lego=${LEGO:-.device-kit/data/nerf_synthetic/lego}
t_vm=${T_VM:-300} t_grid=${T_GRID:-120} t_mlp=${T_MLP:-300} t_mlp_long=${T_MLP_LONG:-1200}
t_distill=${T_DISTILL:-60} t_distill_mlp=${T_DISTILL_MLP:-150}
views=${TEST_VIEWS:-50}
runs=$work/runs logs=$work/logs
mkdir -p "$runs" "$logs" "$work/res"

scratch() {  # scratch GPU LANE MODEL SECONDS LABEL [train.py options...]
  local gpu=$1 lane=$2 model=$3 seconds=$4 label=$5
  shift 5
  CUDA_VISIBLE_DEVICES=$gpu PVD_RESULTS_DIR=$work/res/$lane \
    python benchmarks/train.py --model "$model" --data "$lego" --steps 200000 --test-views "$views" \
      ${BATCH_RAYS:+--batch-rays "$BATCH_RAYS"} --train-set time_limit_s="$seconds" --val-every 2000 --label "$label" "$@" \
      > "$logs/$lane-$model-$label.log" 2>&1
}

distill_lane() {  # distill_lane LANE SECONDS STEPS STAGE1 STAGE2 PAIRS
  CUDA_VISIBLE_DEVICES=0 PVD_RESULTS_DIR=$work/res/$1 \
  PVD_BENCH_NOTE="two distillation lanes shared one GPU (into vm/grid | into mlp)" \
    python benchmarks/distill.py --data "$lego" --teacher vm="$runs/vm" --teacher grid="$runs/grid" \
      --teacher mlp="$runs/mlp" --pairs "$6" --steps "$3" --stage1-steps "$4" --stage2-steps "$5" \
      --time-limit "$2" --val-every 500 --test-views "$views" ${BATCH_RAYS:+--batch-rays "$BATCH_RAYS"} \
      > "$logs/$1.log" 2>&1
}

scratch 1 mlp-long mlp "$t_mlp_long" 20min --train-set "snapshot_times_s=[$t_mlp,$((t_mlp * 2))]" &

scratch 0 alone vm "$t_vm" 5min --out "$runs/vm"
scratch 0 alone grid "$t_grid" 2min --out "$runs/grid"
scratch 0 alone mlp "$t_mlp" 5min --out "$runs/mlp"
distill_lane into-vm-grid "$t_distill" 3000 300 500 vm:vm,vm:grid,grid:vm,grid:grid,mlp:vm,mlp:grid &
distill_lane into-mlp "$t_distill_mlp" 9400 1000 1500 vm:mlp,grid:mlp,mlp:mlp &
wait
touch "$work/done"
grep -h "dB test PSNR\|student .* dB\|snapshot at\|Error\|Traceback" "$logs"/*.log
