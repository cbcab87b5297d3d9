"""``python -m auto_annotate.beam``; see auto_annotate.beam.cli."""

import sys

from auto_annotate.beam.cli import main

sys.exit(main())
