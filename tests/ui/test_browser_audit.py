"""Every dashboard page in real headless Chromium (Debian's, driven by Playwright): every action on it
is reachable with the Tab key, and axe-core finds nothing serious or critical. The pages the e2e
module does not already check with axe, and all of them for the keyboard (it checks the run page's
actions only). axe-core comes from npm at test time into a cache folder, never into the repo.

Both checks read each page from one load of it (a load costs the browser ~0.2 s of CPU): axe first, on the
page as it loaded, then the Tab key through it."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServerProcess, axe_in_context, axe_serious, require
from tests.ui.seed import SeededDashboard

require("playwright", "pip install playwright (the test extra)")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
              pytest.mark.filterwarnings("ignore:User access token is missing")]

AXE_IN_E2E = {"home", "runs", "run", "pipelines", "experiments", "model"}  # tests/e2e/test_dashboard_browser.py
INTERACTIVE = """() => {
  const selector = 'a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), ' +
                   'select:not([disabled]), textarea:not([disabled]), summary, [tabindex]:not([tabindex="-1"])';
  const shown = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 &&
                       getComputedStyle(e).visibility !== 'hidden'; };
  const items = [...document.querySelectorAll(selector)].filter(shown);
  // what has focus after each Tab (read at the key's release, as a read after the press would)
  window.kbReached = new Set();
  document.addEventListener('keyup', e => { const key = document.activeElement?.getAttribute('data-kb');
    if (e.key === 'Tab' && key) window.kbReached.add(key); }, true);
  // a radio group is one tab stop (arrow keys move inside it): key its members by the group's name
  return items.map((e, i) => { const key = e.type === 'radio' ? 'radio:' + e.name : 'item:' + i;
    e.setAttribute('data-kb', key);
    const label = e.getAttribute('aria-label') || e.textContent || e.name || e.id || e.tagName;
    return [key, label.trim().slice(0, 50)]; });
}"""


@pytest.fixture(scope="module")
def server(seeded_dashboard: SeededDashboard) -> ServerProcess:
    return seeded_dashboard.server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright import sync_api as playwright  # imported here: every pytest worker imports this module

    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


def pages(seeded: dict[str, Any]) -> dict[str, str]:
    found = {"home": "/", "runs": "/runs", "run": f"/runs/{seeded['bad']}?task=explode",
             "new run": f"/runs/new?pipeline={seeded['pipeline']}", "experiments": "/experiments",
             "experiment": f"/experiments/{seeded['experiment']}", "pipelines": "/pipelines",
             "pipeline": f"/pipelines/{seeded['pipeline']}", "upload": "/pipelines/upload", "models": "/models",
             "register": "/models/register", "model": f"/models/{seeded['model']}",
             "deploy form": f"/models/{seeded['model']}?deploy={seeded['v1']}", "deployments": "/deployments",
             "artifacts": "/artifacts", "compare": f"/compare?runs={seeded['bad']}&runs={seeded['small']}",
             "notebooks": "/notebooks", "artifacts of a run": f"/artifacts?run={seeded['bad']}"}
    return found


@dataclasses.dataclass
class Audit:
    missed: dict[str, list[str]]
    """Each page's actions that the Tab key did not reach (by label)."""
    findings: dict[str, list[str]]
    """axe-core's serious and critical findings on each page that tests/e2e does not check."""


@pytest.fixture(scope="module")
def audit(server: ServerProcess, seeded: dict[str, Any], browser: Any) -> Audit:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    axe_in_context(context)
    tab = context.new_page()
    audit = Audit(missed={}, findings={})
    try:
        for name, path in pages(seeded).items():
            reply = tab.goto(server.url + path)
            assert reply.status == 200, (path, reply.status)
            if name not in AXE_IN_E2E and (serious := axe_serious(tab)):
                audit.findings[name] = serious
            items = dict(tab.evaluate(INTERACTIVE))
            assert items, path
            # Tab from the top of the page through every stop (one press each at least), then up to 5 more
            # while a stop is missed. The page records each stop: reading it back after every press cost
            # a round trip to the browser per press, a third of the test's CPU.
            reached: set[str] = set()
            for presses in (len(items), 1, 1, 1, 1, 1):
                for _ in range(presses):
                    tab.keyboard.press("Tab")
                reached = set(tab.evaluate("() => [...window.kbReached]"))
                if reached >= set(items):
                    break
            if set(items) - reached:
                audit.missed[name] = [items[k] for k in items if k not in reached]
    finally:
        context.close()
    return audit


def test_every_action_on_every_page_is_reachable_by_keyboard(audit: Audit) -> None:
    assert audit.missed == {}


def test_no_serious_accessibility_findings_on_any_page(audit: Audit) -> None:
    assert audit.findings == {}
