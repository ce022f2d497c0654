"""Registers the Backfill Controller's endpoints in the api-server (behaviour: include/controller/web.py)."""

from airflow.plugins_manager import AirflowPlugin

from include.controller.web import app


class BackfillControllerPlugin(AirflowPlugin):
    name = "backfill_controller"
    fastapi_apps = [{"app": app, "url_prefix": "/backfill-controller", "name": "Backfill Controller"}]
