#!/usr/bin/env bash
# Learning-rate sweep for a shipped config on a FRACTION of ../shared/data/flames/train (the same
# seeded split as tsoda simulate), with scripts/train_flames.sh: one training per rate and
# repeat, each exported and evaluated on ../shared/data/flames/test. A diverged run (NaN loss)
# is recorded as such and the sweep goes on. Prints a table and writes WORK_DIR/sweep.md.
# Usage: scripts/lr_sweep.sh WORK_DIR [CONFIG] [STEPS=600] [RATES="0.04 0.02 0.01 0.005"]
#        [FRACTION=0.1] [REPEATS=1]
set -uo pipefail
cd "$(dirname "$0")/.."
work=$(realpath -m "${1:?usage: scripts/lr_sweep.sh WORK_DIR [CONFIG] [STEPS] [RATES] [FRACTION] [REPEATS]}")
config=${2:-configs/efficientdet_lite0_slim.config}
steps=${3:-600}
rates=${4:-0.04 0.02 0.01 0.005}
fraction=${5:-0.1}
repeats=${6:-1}
train=$(realpath ../shared/data/flames/train)
python=${PYTHON:-.venv/bin/python}
mkdir -p "$work"
images="$work/split/L"
[ -d "$images" ] || "$python" -c "import sys; from pathlib import Path; \
from tsoda.simulation.simulate import make_split; make_split(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), 0)" \
    "$train" "$work/split" "$fraction"
# One set of TFRecords and one ImageNet import for every run.
for rate in $rates; do
  for repeat in $(seq 1 "$repeats"); do
    run="$work/lr$rate-r$repeat"
    mkdir -p "$run"
    [ -e "$work/train.record-00000-of-00004" ] && for f in "$work"/train.record-*; do ln -sf "$f" "$run/"; done
    [ -e "$work/efficientnet_lite0" ] && ln -sfn "$work/efficientnet_lite0" "$run/efficientnet_lite0"
    if [ ! -e "$run/eval_test.json" ]; then
      TRAIN_DIR="$images" LEARNING_RATE=$rate \
          scripts/train_flames.sh "$run" "$config" "$steps" > "$run/sweep.log" 2>&1 \
          || echo "failed: see $run/sweep.log"
    fi
    [ -e "$work/train.record-00000-of-00004" ] || for f in "$run"/train.record-*; do cp "$f" "$work/"; done
    [ -e "$work/efficientnet_lite0" ] || { [ -d "$run/efficientnet_lite0" ] && cp -r "$run/efficientnet_lite0" "$work/"; }
  done
done
"$python" - "$work" <<'PY'
import json, re, sys
from pathlib import Path
work = Path(sys.argv[1])
lines = ["| learning_rate_base | repeat | final loss | diverged | flames/test mAP@0.5 | mAP@0.5:0.95 |",
         "|---|---|---|---|---|---|"]
for run in sorted(work.glob("lr*-r*"), key=lambda p: (-float(p.name[2:].split("-")[0]), p.name)):
    rate, repeat = run.name[2:].split("-r")
    log = (run / "sweep.log").read_text(errors="replace") if (run / "sweep.log").exists() else ""
    nan = re.search(r"loss is NaN at step (\d+)", log)
    loss = re.findall(r"loss (\d+\.\d+)\)", log)
    metrics = json.loads((run / "eval_test.json").read_text()) if (run / "eval_test.json").exists() else {}
    lines.append(f"| {rate} | {repeat} | {loss[-1] if loss else ''} | "
                 f"{'step ' + nan.group(1) if nan else 'no'} | {metrics.get('map50', '')} | "
                 f"{metrics.get('map50_95', '')} |")
(work / "sweep.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
