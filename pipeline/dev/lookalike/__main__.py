"""``python -m pipeline.dev.lookalike --port 8090``."""

import sys

from pipeline.dev.lookalike.server import main

sys.exit(main())
