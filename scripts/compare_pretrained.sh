#!/usr/bin/env bash
# Seed detector with and without the ImageNet EfficientNet-Lite0 backbone: trains
# configs/efficientdet_lite0_slim.config twice on the same FRACTION of ../shared/data/flames/train
# (same split, steps and config; only fine_tune_checkpoint differs), exports both and evaluates
# them on ../shared/data/flames/test, with scripts/train_flames.sh. Needs the [lite0_import]
# extra once, for the weight import.
# Usage: scripts/compare_pretrained.sh WORK_DIR [FRACTION=0.1] [STEPS=600] [VARIANTS="pretrained scratch"]
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(realpath -m "${1:?usage: scripts/compare_pretrained.sh WORK_DIR [FRACTION] [STEPS] [VARIANTS]}")
fraction=${2:-0.1}
steps=${3:-600}
variants=${4:-pretrained scratch}
train=$(realpath ../shared/data/flames/train)
python=${PYTHON:-.venv/bin/python}
mkdir -p "$work"
if [ "$fraction" = 1 ]; then
  images="$train"
else
  images="$work/split/L"
  [ -d "$images" ] || "$python" -c "import sys; from pathlib import Path; \
from tsoda.simulation.simulate import make_split; make_split(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), 0)" \
      "$train" "$work/split" "$fraction"
fi
for variant in $variants; do
  no_pretrained=0
  [ "$variant" = scratch ] && no_pretrained=1
  TRAIN_DIR="$images" NO_PRETRAINED=$no_pretrained \
      scripts/train_flames.sh "$work/$variant" configs/efficientdet_lite0_slim.config "$steps"
done
