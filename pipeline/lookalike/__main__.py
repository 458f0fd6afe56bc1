"""``python -m pipeline.lookalike --port 8090``."""

import sys

from pipeline.lookalike.server import main

sys.exit(main())
