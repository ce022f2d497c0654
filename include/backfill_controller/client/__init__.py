"""How the product talks to Airflow's REST API, the only way it does.

* :mod:`backfill_controller.client.rest`: the transport (session, login, timeouts, retries, no redirects,
  :class:`~backfill_controller.client.rest.ApiError`, ids quoted in paths);
* :mod:`backfill_controller.client.controller_api`: the calls of the ``backfill`` command;
* :mod:`backfill_controller.client.airflow_api`: the calls of the controller's tasks.

The test harness (``scripts/local_airflow``) calls through the same transport.
"""
