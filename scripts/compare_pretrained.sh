#!/usr/bin/env bash
# Seed detector with and without the ImageNet EfficientNet-Lite0 backbone: trains
# configs/efficientdet_lite0_slim.config twice on the same FRACTION of ../shared/data/flames/train
# (same split, steps and config; only fine_tune_checkpoint differs), exports both and evaluates
# them on ../shared/data/flames/test. The cosine schedule is set to STEPS so that it decays fully. Needs the [lite0_import] extra once, for the weight import.
# Usage: scripts/compare_pretrained.sh WORK_DIR [FRACTION=0.1] [STEPS=600] [VARIANTS="pretrained scratch"]
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(realpath -m "${1:?usage: scripts/compare_pretrained.sh WORK_DIR [FRACTION] [STEPS] [VARIANTS]}")
fraction=${2:-0.1}
steps=${3:-600}
variants=${4:-pretrained scratch}
config=configs/efficientdet_lite0_slim.config
data=$(realpath ../shared/data/flames)
python=${PYTHON:-.venv/bin/python}
mkdir -p "$work"

if [ ! -e "$work/efficientnet_lite0/ckpt.index" ]; then
  "$python" -m tsoda.backbones import-efficientnet-lite0 --output_dir "$work/efficientnet_lite0"
fi
if [ "$fraction" = 1 ]; then
  images="$data/train"
else
  images="$work/split/L"
  [ -d "$images" ] || "$python" -c "import sys; from pathlib import Path; \
from tsoda.simulate import make_split; make_split(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), 0)" \
      "$data/train" "$work/split" "$fraction"
fi
if ! ls "$work"/train.record-* >/dev/null 2>&1; then
  "$python" scripts/generate_tfrecord.py --xml_dir "$images" --image_dir "$images" \
      --label_map_path "$data/label_map.pbtxt" --output_path "$work/train.record" --num_shards 2
fi

for variant in $variants; do
  run="$work/$variant"
  mkdir -p "$run"
  if [ "$variant" = pretrained ]; then
    checkpoint="s#fine_tune_checkpoint: \".*\"#fine_tune_checkpoint: \"$work/efficientnet_lite0/ckpt\"#"
  else
    checkpoint="/fine_tune_checkpoint/d"
  fi
  sed -e "s#label_map_path: \"label_map.pbtxt\"#label_map_path: \"$data/label_map.pbtxt\"#" \
      -e "s#input_path: \"train.record\*\"#input_path: \"$work/train.record*\"#" \
      -e "s#num_steps: [0-9]*#num_steps: $steps#" -e "s#total_steps: [0-9]*#total_steps: $steps#" \
      -e "$checkpoint" "$config" > "$run/pipeline.config"
  "$python" -m tsoda train --pipeline_config_path "$run/pipeline.config" \
      --model_dir "$run/model" --num_train_steps "$steps" | tee "$run/train.log"
  "$python" -m tsoda export --pipeline_config_path "$run/pipeline.config" \
      --model_dir "$run/model" --output_dir "$run/export"
  "$python" -m tsoda evaluate --saved_model_path "$run/export/saved_model" \
      --label_map_path "$data/label_map.pbtxt" --data_dir "$data/test" \
      --output_path "$run/eval_test.json"
done
