"""Anchor aspect ratios and sizes from labelled boxes (k-means, 1 - IoU distance).

python scripts/kmeans_anchors.py --xml_dir X [--k 5] [--pipeline_config_path C [--write]]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tsoda.data.anchors_cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
