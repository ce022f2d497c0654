"""How the product talks to Airflow's REST API, the only way it does.

* :mod:`include.client.rest`: the transport (session, login, timeouts, retries, no redirects,
  :class:`~include.client.rest.ApiError`, ids quoted in paths);
* :mod:`include.client.controller_api`: the calls of the ``backfill`` command;
* :mod:`include.client.airflow_api`: the calls of the controller's tasks.

The test harness (``scripts/local_airflow``) calls through the same transport.
"""
