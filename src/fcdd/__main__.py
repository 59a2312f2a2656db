"""``python -m fcdd`` is the ``fcdd`` command."""

import sys

from fcdd.cli import main

sys.exit(main())
