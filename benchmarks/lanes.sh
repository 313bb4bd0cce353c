# Shell functions of the multi-run GPU benchmark scripts (sourced by lego_two_gpus.sh,
# lego_sweep_four_gpus.sh and lego_time_to_quality_one_gpu.sh, not run alone). The caller runs
# prepare_work with its work folder, then sets alone (the note recorded with each result) and,
# for hash_to_mlp, t_distill. BATCH_RAYS, when set, gives every from-scratch run that many rays a
# step.

prepare_work() {  # prepare_work WORK_DIR: set work, lego, views, runs, logs; make the folders
  work=${1:?usage: $(basename "$0") WORK_DIR}
  lego=${LEGO:-.device-kit/data/nerf_synthetic/lego}
  views=${TEST_VIEWS:-50}
  runs=$work/runs logs=$work/logs
  mkdir -p "$runs" "$logs" "$work/res"
}

scratch() {  # scratch GPU MODEL SECONDS LABEL [train.py options...]: train, score, record
  local gpu=$1 model=$2 seconds=$3 label=$4
  shift 4
  CUDA_VISIBLE_DEVICES=$gpu PVD_RESULTS_DIR=$work/res/gpu$gpu-$model-$label PVD_BENCH_NOTE=$alone \
    python benchmarks/train.py --model "$model" --data "$lego" --steps 200000 --test-views "$views" \
      ${BATCH_RAYS:+--batch-rays "$BATCH_RAYS"} --train-set time_limit_s="$seconds" --label "$label" "$@" \
      > "$logs/gpu$gpu-$model-$label.log" 2>&1
}

wait_for() {  # wait_for RUN: until the run folder RUN under runs/ has been marked done
  until [ -e "$runs/$1.done" ]; do sleep 5; done
}

hash_to_mlp() {  # hash_to_mlp GPU NAME [distill.py options...]: hash -> mlp from runs/${teacher_run:-hash}, t_distill seconds
  local gpu=$1 name=$2
  shift 2
  CUDA_VISIBLE_DEVICES=$gpu PVD_RESULTS_DIR=$work/res/gpu$gpu-distill-$name PVD_BENCH_NOTE=$alone \
    python benchmarks/distill.py --data "$lego" --teacher hash="$runs/${teacher_run:-hash}" --pairs hash:mlp \
      --steps 15000 --time-limit "$t_distill" --val-every 500 --test-views "$views" "$@" \
      > "$logs/gpu$gpu-distill-$name.log" 2>&1
}
