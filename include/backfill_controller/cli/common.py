"""What every part of the ``backfill`` command shares: its exit statuses and the error of a command
line it refuses. The controller it runs is :data:`backfill_controller.contract.CONTROLLER_DAG_ID`."""

from __future__ import annotations

EXIT_SUCCESS = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130
#: ``backfill status``: the backfill has not finished (queued, planning, running or cancelling).
EXIT_STILL_RUNNING = 3
#: ``backfill status``: Airflow could not be reached or refused the login (3 means still running).
EXIT_STATUS_UNREACHABLE = 4


class UsageError(ValueError):
    """The command line asks for something the command refuses; nothing was sent to Airflow."""
