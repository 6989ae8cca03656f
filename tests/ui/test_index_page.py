"""The entry page as a browser renders it: real headless Chromium against a real server."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

import httpx
import pytest

from tests.support import ServerProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs Debian's chromium)")
def test_index_links_every_part_of_the_platform(server: ServerProcess) -> None:
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", server.url + "/"],
                             capture_output=True, text=True, timeout=60).stdout
    assert "<h1>kfbox</h1>" in dom
    for label in ("Model Registry", "Pipelines", "Serving", "Metrics", "OpenAPI"):
        assert label in dom
    # every link on the page leads somewhere that answers
    hrefs = [part.split('"', 1)[0] for part in dom.split('href="')[1:]]
    assert len(hrefs) >= 5
    for href in hrefs:
        assert httpx.get(server.url + href).status_code == 200, href
