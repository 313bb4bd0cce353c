#!/usr/bin/env bash
# Recipe sweeps for issues 3 and 5 on a machine with four GPUs, in about 10 minutes, every run
# alone on its GPU. Meant to run detached (setsid) so that it outlives one device call:
#   setsid bash benchmarks/lego_sweep_four_gpus.sh WORK_DIR > WORK_DIR/suite.log 2>&1 &
# It writes logs under WORK_DIR/logs, results under WORK_DIR/res/<lane>/ (merge them with
# benchmarks/merge_results.py) and WORK_DIR/done when everything has finished.
#   Phase 1, hash 2 min (issue 3): the defaults (kept: the teacher of phase 2), finest hash
#            resolution 1024, Adam beta2 0.999, opacity entropy 1e-3.
#   Phase 2, hash -> mlp (issue 5, time to quality), 60 s each: without and with skip_occluded,
#            with lr 5e-3, with lr 5e-3 and no block-wise stages.
#   Phase 3, hash 2 min: white background, 16384 rays a step, the four recipe changes of
#            phases 1 and 3 together, the defaults with another seed.
# Durations can be shortened for a dry run: T_HASH, T_DISTILL (seconds); LEGO names the scene.
set -u
work=${1:?usage: lego_sweep_four_gpus.sh WORK_DIR}
lego=${LEGO:-.device-kit/data/nerf_synthetic/lego}
t_hash=${T_HASH:-120} t_distill=${T_DISTILL:-60}
views=${TEST_VIEWS:-50}
runs=$work/runs logs=$work/logs
mkdir -p "$runs" "$logs" "$work/res"
alone="alone on its GPU; the machine's other GPUs ran other benchmarks at the same time"

hash() {  # hash GPU LABEL [train.py options...]
  local gpu=$1 label=$2
  shift 2
  CUDA_VISIBLE_DEVICES=$gpu PVD_RESULTS_DIR=$work/res/gpu$gpu-hash-$label PVD_BENCH_NOTE=$alone \
    python benchmarks/train.py --model hash --data "$lego" --steps 200000 --test-views "$views" \
      --train-set time_limit_s="$t_hash" --label "$label" --val-every 2000 "$@" \
      > "$logs/gpu$gpu-hash-$label.log" 2>&1
}

into_mlp() {  # into_mlp GPU LABEL [distill.py options...]: hash -> mlp from the phase-1 teacher
  local gpu=$1 label=$2
  shift 2
  until [ -e "$runs/hash.done" ]; do sleep 5; done
  CUDA_VISIBLE_DEVICES=$gpu PVD_RESULTS_DIR=$work/res/gpu$gpu-distill-$label PVD_BENCH_NOTE=$alone \
    python benchmarks/distill.py --data "$lego" --teacher hash="$runs/hash" --pairs hash:mlp \
      --steps 15000 --stage1-steps 1000 --stage2-steps 1500 --time-limit "$t_distill" --val-every 500 \
      --test-views "$views" --label "$label" "$@" > "$logs/gpu$gpu-distill-$label.log" 2>&1
}

lane() {  # lane GPU: its three phases
  case $1 in
    0) hash 0 sweep-defaults --out "$runs/hash"; touch "$runs/hash.done"
       into_mlp 0 sweep-60s-no-skip --distill-set skip_occluded=false
       hash 0 sweep-white-bg --train-set random_background=false ;;
    1) hash 1 sweep-finest-1024 --set finest_resolution=1024
       into_mlp 1 sweep-60s
       hash 1 sweep-16k-rays --batch-rays 16384 ;;
    2) hash 2 sweep-beta2-0.999 --train-set adam_beta2=0.999
       into_mlp 2 sweep-60s-lr5e-3 --distill-set lr=5e-3
       hash 2 sweep-combined --set finest_resolution=1024 --train-set adam_beta2=0.999 \
         --train-set opacity_entropy_weight=1e-3 --train-set random_background=false ;;
    3) hash 3 sweep-entropy-1e-3 --train-set opacity_entropy_weight=1e-3
       into_mlp 3 sweep-60s-lr5e-3-no-blockwise --distill-set lr=5e-3 --variant no-blockwise
       hash 3 sweep-defaults-seed-1 --train-set seed=1 ;;
  esac
}

for gpu in 0 1 2 3; do lane "$gpu" & done
wait
touch "$work/done"
grep -h "dB test PSNR\|student .* dB\|Error\|Traceback" "$logs"/*.log
