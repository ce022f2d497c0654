"""What ``airflow providers list`` says of the package, and where ``airflow db migrate`` finds its tables.

Announced through the distribution's ``apache_airflow_provider`` entry point.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

DISTRIBUTION = "airflow-backfill-controller"


def get_provider_info() -> dict[str, Any]:
    try:
        installed = version(DISTRIBUTION)
    except PackageNotFoundError:  # imported from a source tree that is not installed
        installed = "0+unknown"
    return {
        "package-name": DISTRIBUTION,
        "name": "Backfill Controller",
        "description": "Backfill Airflow 3 DAGs from the UI, REST and a CLI with Airflow 2's flags.",
        "versions": [installed],
        "db-managers": ["backfill_controller.db.manager.BackfillControllerDBManager"],
    }
