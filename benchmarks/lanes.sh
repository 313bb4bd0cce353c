# Shell functions of the multi-GPU benchmark scripts (sourced by lego_two_gpus.sh and
# lego_sweep_four_gpus.sh, not run alone). The caller sets: lego (scene folder), views (test
# views), work (its work folder, results go under work/res/<lane>/), logs, runs (run folders and
# their .done markers) and alone (the note recorded with each result). BATCH_RAYS, when set,
# gives every from-scratch run that many rays a step.

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
