"""``python -m xdna_emu`` is the ``xdna-emu`` command."""

import sys

from .cli import main

sys.exit(main())
