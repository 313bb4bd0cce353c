#!/usr/bin/env bash
# Issue 5's time-to-quality pair on a one-GPU machine, every run alone on the card, one after
# the other (about 20 minutes): the hash teacher (2 min, finest hash resolution 512; also an
# issue-3 figure, scored at one ray a pixel, at 2x2 rays a pixel and with 8 sample offsets a
# ray), the mlp from scratch (5 min), then hash -> mlp with the teacher's colour head copied and
# stages of 300 / 500 steps: 60 s with the mlp student's defaults (8192 rays, parameters
# averaged with decay 0.99), 60 s with 16384 and with 32768 rays, and 240 s with 16384 rays (to
# time the from-scratch run's 5-minute level). Meant to run detached (setsid) so that it
# outlives one device call:
#   setsid bash benchmarks/lego_time_to_quality_one_gpu.sh WORK_DIR > WORK_DIR/suite.log 2>&1 &
# It writes logs under WORK_DIR/logs, results under WORK_DIR/res/<lane>/ (merge them with
# benchmarks/merge_results.py) and WORK_DIR/done at the end. Durations can be shortened for a
# dry run: T_HASH, T_MLP, T_DISTILL, T_DISTILL_LONG (seconds); LEGO names the scene.
set -u
source "$(dirname "$0")/lanes.sh"
prepare_work "$@"
t_hash=${T_HASH:-120} t_mlp=${T_MLP:-300} t_distill=${T_DISTILL:-60} t_long=${T_DISTILL_LONG:-240}
alone="alone on the machine's only GPU"

into_mlp() {  # into_mlp NAME [distill.py options...]: hash -> mlp, teacher's head, short stages
  hash_to_mlp 0 "$1" --distill-set init_head_from_teacher=true --stage1-steps 300 --stage2-steps 500 \
    --label "$1" "${@:2}"
}

scratch 0 hash "$t_hash" 2min-finest-512-offsets --val-every 4000 --set finest_resolution=512 --supersample 2 \
  --sample-offsets 8 --out "$runs/hash"
scratch 0 mlp "$t_mlp" 5min-alone --val-every 500
into_mlp time-to-quality-defaults
into_mlp time-to-quality-16k-rays --batch-rays 16384
into_mlp time-to-quality-32k-rays --batch-rays 32768
t_distill=$t_long into_mlp time-to-quality-16k-rays-240s --batch-rays 16384 --steps 60000
touch "$work/done"
grep -h "dB test PSNR\|rays a pixel\|sample offsets\|student .* dB\|Error\|Traceback" "$logs"/*.log
