"""``python -m visionkit`` runs the command line."""

import sys

from visionkit.cli import main

sys.exit(main())
