"""``python -m backfill_controller.cli``: the ``backfill`` command
(:func:`backfill_controller.cli.commands.main`)."""

import sys

from backfill_controller.cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
