#!/usr/bin/env bash
# The lego runs of issue 3 on a machine with four GPUs, in about 7 minutes, every run alone on
# its GPU: the hash field encoding each sample over its pixel's footprint (footprint_radius, half
# a pixel at the cameras' distance: 0.5 * 4.03 / 555.6 = 0.00363 world units) against point
# samples, each scored on 50 test views at one and 2x2 rays a pixel and on all 200 test views.
# Meant to run detached (setsid) so that it outlives one device call:
#   setsid bash benchmarks/lego_sweep_four_gpus.sh WORK_DIR > WORK_DIR/suite.log 2>&1 &
# It writes logs under WORK_DIR/logs, results under WORK_DIR/res/<lane>/ (merge them with
# benchmarks/merge_results.py) and WORK_DIR/done when everything has finished.
#   GPU 0: finest 512 with the footprint; then a second seed of it.
#   GPU 1: finest 1024 with the footprint; then a second seed of it.
#   GPU 2: finest 2048 (the default) with the footprint; then finest 768 with it.
#   GPU 3: finest 512 with point samples (the recipe before); then finest 512 with a footprint of
#          0.7 times the radius.
# (Earlier versions of this script, same name, ran the sweeps of commits b044f2b, c68c3e5, c5e297d
# and 7c02ed7.) Durations can be shortened for a dry run: T_HASH (seconds); LEGO names the scene.
set -u
# Four processes with a torch thread pool each as wide as the host overload it.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
source "$(dirname "$0")/lanes.sh"
prepare_work "$@"
t_hash=${T_HASH:-120}
alone="alone on its GPU; the machine's other GPUs ran other benchmarks at the same time"
radius=0.00363

hash_run() {  # hash_run GPU FINEST LABEL [train.py options...]: hash for T_HASH seconds, scored three ways
  scratch "$1" hash "$t_hash" "$3" --val-every 4000 --set finest_resolution="$2" --supersample 2 --all-views "${@:4}"
}

lane() {
  case $1 in
    0) hash_run 0 512 footprint-finest-512 --set footprint_radius=$radius
       hash_run 0 512 footprint-finest-512-seed-1 --set footprint_radius=$radius --train-set seed=1 ;;
    1) hash_run 1 1024 footprint-finest-1024 --set footprint_radius=$radius
       hash_run 1 1024 footprint-finest-1024-seed-1 --set footprint_radius=$radius --train-set seed=1 ;;
    2) hash_run 2 2048 footprint-finest-2048 --set footprint_radius=$radius
       hash_run 2 768 footprint-finest-768 --set footprint_radius=$radius ;;
    3) hash_run 3 512 points-finest-512
       hash_run 3 512 footprint-0.7-finest-512 --set footprint_radius=0.00254 ;;
  esac
}

for gpu in 0 1 2 3; do lane "$gpu" & done
wait
touch "$work/done"
grep -h "dB test PSNR\|rays a pixel\|Error\|Traceback" "$logs"/*.log
