"""Check the conf a backfill passes to every target run against the target's own Params.

Airflow validates a run's conf when the run is created; checking it once, before anything is
triggered, turns one bad key into one clear error instead of a failed trigger per date.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema

from backfill_controller.domain.request import FieldError


def conf_errors(conf: Mapping[str, Any], target_params: Mapping[str, Any]) -> list[FieldError]:
    """Problems of ``conf`` against ``target_params`` as ``GET /api/v2/dags/{id}/details`` lists them.

    Each param there is ``{"value": default, "schema": {...}, "description": ...}``; a key of
    ``conf`` replaces the default. Keys the target does not declare pass, as in Airflow.
    """
    errors = []
    for name, spec in target_params.items():
        schema = spec.get("schema", {}) if isinstance(spec, Mapping) else {}
        default = spec.get("value") if isinstance(spec, Mapping) else spec
        if name not in conf and default is None and not _allows_null(schema):
            if schema:
                errors.append(
                    FieldError(f"conf.{name}", None, "the target requires this param", _describe(schema))
                )
            continue
        value = conf.get(name, default)
        try:
            jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())
        except jsonschema.ValidationError as exc:
            errors.append(FieldError(f"conf.{name}", value, exc.message, _describe(schema)))
    return errors


def _allows_null(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    return not schema or kind == "null" or (isinstance(kind, list) and "null" in kind)


def _describe(schema: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in schema.items() if k not in ("title", "description")) or "any"
