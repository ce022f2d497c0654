"""The ``backfill`` command: Airflow 2's ``airflow dags backfill`` command line, run by the
backfill controller over the REST API (:mod:`include.cli.commands`).

It lives outside :mod:`include.backfill`, the pure domain, which it reads: the request contract,
the state of a backfill and the report's table. ``python -m include.cli`` runs it.
"""
