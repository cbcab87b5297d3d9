#!/usr/bin/env bash
# Trains a flame detector on ../shared/data/flames/train with a shipped config, exports it
# and evaluates it on ../shared/data/flames/test. Every step is a project command.
# Usage: scripts/train_flames.sh WORK_DIR [CONFIG=configs/pipeline.config] [STEPS=2500]
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(realpath -m "${1:?usage: scripts/train_flames.sh WORK_DIR [CONFIG] [STEPS]}")
config=${2:-configs/pipeline.config}
steps=${3:-2500}
data=$(realpath ../shared/data/flames)
python=${PYTHON:-.venv/bin/python}
mkdir -p "$work"
if ! ls "$work"/train.record-* >/dev/null 2>&1; then
  "$python" scripts/generate_tfrecord.py --xml_dir "$data/train" --image_dir "$data/train" \
      --label_map_path "$data/label_map.pbtxt" --output_path "$work/train.record" --num_shards 4
fi
sed -e "s#label_map_path: \"label_map.pbtxt\"#label_map_path: \"$data/label_map.pbtxt\"#" \
    -e "s#input_path: \"train.record\*\"#input_path: \"$work/train.record*\"#" \
    "$config" > "$work/pipeline.config"
"$python" -m tsoda train --pipeline_config_path "$work/pipeline.config" \
    --model_dir "$work/model" --num_train_steps "$steps"
"$python" -m tsoda export --pipeline_config_path "$work/pipeline.config" \
    --model_dir "$work/model" --output_dir "$work/export"
"$python" -m tsoda evaluate --saved_model_path "$work/export/saved_model" \
    --label_map_path "$data/label_map.pbtxt" --data_dir "$data/test" \
    --output_path "$work/eval_test.json"
