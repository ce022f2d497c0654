"""``python -m scripts.local_airflow up ...``: see ``scripts.local_airflow.cli``."""

import sys

from scripts.local_airflow.cli import main

sys.exit(main())
