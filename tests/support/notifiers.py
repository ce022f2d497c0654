"""A notifier for the end-to-end tests: appends what it was told, rendered, to a JSON-lines file."""

from __future__ import annotations

import json
from pathlib import Path

from airflow.sdk.bases.notifier import BaseNotifier


class RecordingNotifier(BaseNotifier):
    template_fields = ("subject", "body")

    def __init__(
        self, path: str, subject: str = "{{ backfill.headline }}", body: str = "{{ backfill.text }}"
    ):  # noqa: E501
        super().__init__()
        self.path = path
        self.subject = subject
        self.body = body

    def notify(self, context) -> None:
        record = {"subject": self.subject, "body": self.body, "backfill": context["backfill"]}
        with Path(self.path).open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
