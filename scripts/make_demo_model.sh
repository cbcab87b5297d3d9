#!/usr/bin/env bash
# Makes the demo's seed detector (tsoda/demo/seed_model): trains CONFIG on
# ../shared/data/flames/train without the 30 demo photos (tsoda/demo/data/demo_images.txt), so
# the demo labels photos its model never saw; exports it and evaluates it on flames/test.
# Usage: scripts/make_demo_model.sh WORK_DIR [CONFIG=configs/efficientdet_lite0_slim.config] [STEPS=2500]
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(realpath -m "${1:?usage: scripts/make_demo_model.sh WORK_DIR [CONFIG] [STEPS]}")
config=${2:-configs/efficientdet_lite0_slim.config}
steps=${3:-2500}
train=$(realpath ../shared/data/flames/train)
images="$work/train_images"
mkdir -p "$images"
for image in "$train"/*.jpg; do
  name=$(basename "$image")
  grep -qxF "$name" tsoda/demo/data/demo_images.txt && continue
  ln -sf "$image" "$images/$name"
  ln -sf "${image%.*}.xml" "$images/${name%.*}.xml"
done
TRAIN_DIR="$images" scripts/train_flames.sh "$work/run" "$config" "$steps"
out=tsoda/demo/seed_model
rm -rf "$out" && mkdir -p "$out"
cp -r "$work/run/export/saved_model" "$out/saved_model"
cp "$config" "$out/pipeline.config"
cp "$work/run/eval_test.json" "$out/eval_test.json"
du -sh "$out/saved_model"
