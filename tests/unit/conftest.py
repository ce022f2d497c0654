"""Unit-test setup: an isolated, throwaway Airflow configuration.

The domain package imports Airflow's timetables, which read the Airflow configuration on import.
The environment is set here, at import time, so it is in place before any test module imports
Airflow: ``pytest tests/unit`` needs no exported variables and never touches a real AIRFLOW_HOME.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_AIRFLOW_HOME = tempfile.mkdtemp(prefix="backfill-unit-airflow-")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)

os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
