"""``python -m include.cli``: the ``backfill`` command (:func:`include.cli.commands.main`)."""

import sys

from include.cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
