"""The Backfills page: its script is valid JavaScript (a syntax error would leave the page blank),
and ``/ui`` serves its files as one document, CSS and script inline, the phases filled in."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from backfill_controller.domain.state import Phase
from backfill_controller.server.ui import PAGE_DIR
from backfill_controller.server.web import backfills_page

NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="Node.js checks the script's syntax; the browser test still runs it")
def test_the_page_script_parses():
    script = PAGE_DIR / "backfills.js"
    result = subprocess.run([str(NODE), "--check", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_the_page_is_served_whole_with_its_css_script_and_phases():
    response = backfills_page()
    page = bytes(response.body).decode("utf-8")

    assert response.headers["cache-control"] == "no-store"
    assert response.media_type == "text/html"
    assert (PAGE_DIR / "backfills.css").read_text(encoding="utf-8") in page
    assert (PAGE_DIR / "backfills.js").read_text(encoding="utf-8") in page
    # Nothing is left for the browser to fetch or fill in.
    assert "__PHASES__" not in page
    assert 'href="backfills.css"' not in page
    assert 'src="backfills.js"' not in page
    phases = re.search(r'<script type="application/json" id="phases">(.*?)</script>', page)
    assert phases is not None
    assert json.loads(phases.group(1)) == [p.value for p in Phase]
    # The script reads the phases after the block that holds them.
    assert page.index('id="phases"') < page.index('"use strict"')


def test_the_new_backfill_form_is_given_every_key_of_a_request():
    from backfill_controller.domain.keys import KEYS, form_params
    from backfill_controller.domain.settings import Limits

    page = bytes(backfills_page().body).decode("utf-8")
    keys = re.search(r'<script type="application/json" id="keys">(.*?)</script>', page)

    assert "__KEYS__" not in page and keys is not None
    assert json.loads(keys.group(1)) == form_params(Limits.from_config())
    assert {k.name for k in KEYS} == set(json.loads(keys.group(1)))
