#!/usr/bin/env bash
# Issue 5's time-to-quality pair on a one-GPU machine, every run alone on the card, one after
# the other (about 17 minutes): a hash teacher of 2 min with issue 3's recipe (finest hash
# resolution 512, 4 features a level, parameters averaged with decay 0.99; also an issue-3
# figure, scored at one and at 2x2 rays a pixel); the mlp from scratch (5 min); hash -> mlp with
# the mlp student's defaults (see ARCHITECTURE_DISTILLATION in taichi_pvd/presets.py), the teacher's colour head copied and
# stages of 300 / 500 steps, for 240 s (to time the from-scratch run's 5-minute level) and for
# 60 s. (Until 195e1b4 the teacher had 2 features a level and a second, 4-feature teacher was
# distilled for 60 s at the end.) Both sides validate every 200 steps (a few seconds apart), so
# the times to each level are read finely. Meant to run detached (setsid) so that it outlives
# one device call:
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

# The runs the time-to-quality table needs come first, so that a call cut short still has them.
scratch 0 hash "$t_hash" 2min-f4-ema0.99 --val-every 4000 --set finest_resolution=512 --set features_per_level=4 \
  --train-set ema_decay=0.99 --supersample 2 --out "$runs/hash"
scratch 0 mlp "$t_mlp" 5min-alone --val-every 200
t_distill=$t_long into_mlp time-to-quality-defaults-240s --val-every 200 --steps 60000
into_mlp time-to-quality-defaults --val-every 200
touch "$work/done"
grep -h "dB test PSNR\|rays a pixel\|student .* dB\|Error\|Traceback" "$logs"/*.log
