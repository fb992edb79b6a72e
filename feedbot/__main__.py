"""``python -m feedbot``: the same as the ``feedbot`` command."""

import sys

from feedbot.cli import main

sys.exit(main())
