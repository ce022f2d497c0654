"""Registers the Backfill Controller in the api-server and the UI (behaviour: include/controller/)."""

from airflow.plugins_manager import AirflowPlugin

from include.controller import cancel
from include.controller.web import app

PREFIX = "/backfill-controller"


class BackfillControllerPlugin(AirflowPlugin):
    name = "backfill_controller"
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "Backfill Controller"}]
    # Cancelling a backfill (a controller run marked failed by a user) stops all of it; the
    # middleware keeps the acting user of such requests for the listener.
    listeners = [cancel]
    fastapi_root_middlewares = [
        {"middleware": cancel.ActingUserMiddleware, "name": "Backfill Controller: acting user"}
    ]
    # The Backfills page (include/controller/ui.py) as a top-level navigation item (Airflow 3.1+
    # external view: no category = top level; the UI shows it in an iframe at /plugin/backfills).
    external_views = [
        {
            "name": "Backfills",
            "href": f"{PREFIX}/ui",
            "destination": "nav",
            "url_route": "backfills",
            "icon": f"{PREFIX}/icon.svg",
            "icon_dark_mode": f"{PREFIX}/icon.svg?dark=true",
        }
    ]
