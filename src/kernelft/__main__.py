"""``python -m kernelft``: the ``kernelft`` command (:mod:`kernelft.cli`)."""

import sys

from kernelft.cli import main

if __name__ == "__main__":
    sys.exit(main())
