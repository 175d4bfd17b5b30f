"""``python -m fast_timesformer`` runs the ``fast-timesformer`` command."""

import sys

from fast_timesformer.cli import main

if __name__ == "__main__":
    sys.exit(main())
