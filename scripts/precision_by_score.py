"""How precise a model's detections are above each score on labelled data (IoU 0.5 and 0.3).

python scripts/precision_by_score.py --model_path M --label_map_path L --data_dir D
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tsoda.simulation.threshold_study import precision_main

if __name__ == "__main__":
    sys.exit(precision_main(sys.argv[1:]))
