#!/usr/bin/env bash
# The lego runs of issues 3 and 5 on a machine with four GPUs, in about 9 minutes, every run
# alone on its GPU. Meant to run detached (setsid) so that it outlives one device call:
#   setsid bash benchmarks/lego_sweep_four_gpus.sh WORK_DIR > WORK_DIR/suite.log 2>&1 &
# It writes logs under WORK_DIR/logs, results under WORK_DIR/res/<lane>/ (merge them with
# benchmarks/merge_results.py) and WORK_DIR/done when everything has finished.
#   GPU 0: hash 2 min, finest hash resolution 512, third seed (issue 3; the teacher), then
#          hash -> mlp (60 s, the teacher's colour head copied, stages of 300 / 500 steps) as
#          is, with the student's parameters averaged (decay 0.99), and averaged with lr 4e-3.
#   GPU 1: hash 5 min (finest 512: what more steps would give), then hash -> mlp averaged with
#          8192 rays a step.
#   GPU 2: hash 2 min (finest 512): samples twice as dense along rays (2048 steps across the
#          box); moving average 0.99 with a second seed; lr 2e-2.
#   GPU 3: hash 2 min (finest 512): final learning rate 1% instead of 3%; average 0.99 with
#          2048 steps across the box; average 0.995.
# (Earlier versions of this script, same name, ran the sweeps of commits b044f2b, c68c3e5 and
# c5e297d.)
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

into_mlp() {  # into_mlp GPU NAME [distill.py options...]: hash -> mlp once GPU 0's hash is done
  wait_for hash
  hash_to_mlp "$@"
}

hash512() {  # hash512 GPU LABEL [train.py options...]: hash for T_HASH seconds, finest level 512
  scratch "$1" hash "$t_hash" "$2" --val-every 4000 --set finest_resolution=512 "${@:3}"
}

head_short=(--distill-set init_head_from_teacher=true --stage1-steps 300 --stage2-steps 500)
averaged=(--distill-set ema_decay=0.99)
dense=(--train-set 'marching={"steps_across_box": 2048}')

lane() {
  case $1 in
    0) hash512 0 sweep4-finest-512-seed-2 --train-set seed=2 --out "$runs/hash"; touch "$runs/hash.done"
       into_mlp 0 head-short "${head_short[@]}" --label sweep4-60s-head-short-stages
       into_mlp 0 averaged "${head_short[@]}" "${averaged[@]}" --label sweep4-60s-head-short-ema-0.99
       into_mlp 0 averaged-lr "${head_short[@]}" "${averaged[@]}" --distill-set lr=4e-3 \
         --label sweep4-60s-head-short-ema-0.99-lr4e-3 ;;
    1) scratch 1 hash 300 sweep4-5min --val-every 4000 --set finest_resolution=512
       into_mlp 1 averaged-8k "${head_short[@]}" "${averaged[@]}" --batch-rays 8192 \
         --label sweep4-60s-head-short-ema-0.99-8k-rays ;;
    2) hash512 2 sweep4-dense-samples "${dense[@]}"
       hash512 2 sweep4-ema-0.99-seed-1 --train-set ema_decay=0.99 --train-set seed=1
       hash512 2 sweep4-lr2e-2 --lr 2e-2 ;;
    3) hash512 3 sweep4-lr-final-0.01 --train-set lr_final_ratio=0.01
       hash512 3 sweep4-ema-0.99-dense-samples --train-set ema_decay=0.99 "${dense[@]}"
       hash512 3 sweep4-ema-0.995 --train-set ema_decay=0.995 ;;
  esac
}

for gpu in 0 1 2 3; do lane "$gpu" & done
wait
touch "$work/done"
grep -h "dB test PSNR\|rays a pixel\|student .* dB\|Error\|Traceback" "$logs"/*.log
