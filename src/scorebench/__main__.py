"""``python -m scorebench``: the command line (:func:`scorebench.cli.main`)."""

import sys

from .cli import main

sys.exit(main())
