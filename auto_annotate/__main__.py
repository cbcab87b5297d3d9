"""``python -m auto_annotate``; see auto_annotate.cli."""

import sys

from auto_annotate.cli import main

sys.exit(main())
