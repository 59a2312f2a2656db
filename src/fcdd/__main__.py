"""``python -m fcdd`` is the ``fcdd`` command (also as torchrun's ``-m fcdd``); guarded, so a
process that imports this module as its main one (multiprocessing's spawn) runs nothing."""

import sys

from fcdd.cli import main

if __name__ == "__main__":
    sys.exit(main())
