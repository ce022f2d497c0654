"""Registers the Backfill Controller in the api-server and the UI.

Loaded from the distribution's ``airflow.plugins`` entry point by every Airflow component: the
deployment's plugins folder holds nothing of it. Behaviour lives in :mod:`backfill_controller.server`.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from backfill_controller.contract import URL_PREFIX
from backfill_controller.server import cancel
from backfill_controller.server.web import app


class BackfillControllerPlugin(AirflowPlugin):
    name = "backfill_controller"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Backfill Controller"}]
    # Cancelling a backfill (a controller run marked failed by a user) stops all of it; the
    # middleware keeps the acting user of such requests for the listener.
    listeners = [cancel]
    fastapi_root_middlewares = [
        {"middleware": cancel.ActingUserMiddleware, "name": "Backfill Controller: acting user"}
    ]
    # The Backfills page (backfill_controller.server.ui) as a top-level navigation item (Airflow
    # 3.1+ external view: no category = top level; the UI shows it in an iframe at /plugin/backfills).
    external_views = [
        {
            "name": "Backfills",
            "href": f"{URL_PREFIX}/ui",
            "destination": "nav",
            "url_route": "backfills",
            "icon": f"{URL_PREFIX}/icon.svg",
            "icon_dark_mode": f"{URL_PREFIX}/icon.svg?dark=true",
        }
    ]
