"""``python -m tsoda``; see tsoda.cli."""

import sys

from tsoda.cli import main

sys.exit(main())
