"""Replays a finished TSODA round's detections against hidden labels for every threshold pair.

python scripts/threshold_study.py --loop_dir W/seed0/loop-KEY --dataset_dir D [--round 1]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tsoda.simulation.threshold_study import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
