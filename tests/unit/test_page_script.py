"""The Backfills page's script is valid JavaScript (a syntax error would leave the page blank)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from include.controller.ui import PAGE

NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="Node.js checks the script's syntax; the browser test still runs it")
def test_the_page_script_parses(tmp_path):
    script = PAGE.split("<script>", 1)[1].split("</script>", 1)[0]
    path = tmp_path / "page.js"
    path.write_text(script)
    result = subprocess.run([str(NODE), "--check", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
