"""``python -m mape_viz.cli``: the ``mape-viz`` command line."""

import sys

from . import main

sys.exit(main())
