"""Tell the deployment's notifiers how a backfill ended (called by the report task of the head run).

A notifier that fails is logged and changes nothing: the backfill's result is the report, not the
e-mail about it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from backfill_controller.domain.notify import chosen, default_notify, event_of, summary
from backfill_controller.domain.settings import deployment_notifiers

log = logging.getLogger(__name__)


def notify_end(report: Mapping[str, Any], requested: Any, context: Mapping[str, Any]) -> list[str]:
    """Call the notifiers chosen for this report's event; return the names that were told."""
    try:
        specs = deployment_notifiers()
    except ValueError as exc:
        log.error("no notification sent: %s", exc)
        return []
    names = requested if isinstance(requested, list) and all(isinstance(n, str) for n in requested) else None
    event = event_of(report)
    targets = chosen(names, default_notify(), specs, event)
    if not targets:
        return []
    backfill = summary(report, _link(context))
    told = []
    for spec in targets:
        try:
            module, _, name = spec.class_path.rpartition(".")
            notifier = getattr(importlib.import_module(module), name)(**spec.kwargs)
            notifier({**context, "backfill": backfill})
        except Exception:
            log.exception("notifier %s (%s) failed; the result is unchanged", spec.name, spec.class_path)
        else:
            told.append(spec.name)
    log.info("%s: notified %s", event, ", ".join(told) or "nobody")
    return told


def _link(context: Mapping[str, Any]) -> str | None:
    from airflow.sdk.configuration import conf

    base = conf.get("api", "base_url", fallback="") or ""
    dag_run = context.get("dag_run")
    if not base or dag_run is None:
        return None
    return f"{base.rstrip('/')}/dags/{quote(dag_run.dag_id)}/runs/{quote(dag_run.run_id, safe='')}"
