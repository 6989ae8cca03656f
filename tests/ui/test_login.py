"""With a token, the dashboard is behind the session login (kfbox.server.session): pages redirect
to /login, the token becomes a cookie, and forms then need both the CSRF token and the Origin."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support import ServerProcess

TOKEN = "dashboard-secret"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess.start(tmp_path_factory.mktemp("home"), token=TOKEN)
    yield proc
    proc.stop()


def test_pages_need_a_login_then_forms_need_csrf_and_origin(guarded: ServerProcess) -> None:
    with httpx.Client(base_url=guarded.url, timeout=30) as browser:
        html = {"Accept": "text/html"}
        first = browser.get("/runs", headers=html)
        assert first.status_code == 303 and first.headers["location"].startswith("/login?next=")
        form = browser.get(first.headers["location"], headers=html)
        assert form.status_code == 200 and 'action="/login"' in form.text and 'value="/runs"' in form.text
        assert browser.get("/static/app.css").status_code == 200  # the login page is styled
        wrong = browser.post("/login", data={"token": "nope", "next": "/runs"}, headers={"Origin": guarded.url})
        assert wrong.status_code == 401
        login = browser.post("/login", data={"token": TOKEN, "next": "/runs"}, headers={"Origin": guarded.url})
        assert login.status_code == 303 and login.headers["location"] == "/runs"
        assert browser.get("/runs", headers=html).status_code == 200
        experiment = browser.post("/apis/v2beta1/experiments", json={"display_name": "e"},
                                  headers={"Authorization": f"Bearer {TOKEN}"}).json()["experiment_id"]
        page = browser.get(f"/experiments/{experiment}", headers=html)
        assert page.status_code == 200 and "Archive" in page.text
        token = browser.cookies["kfbox_csrf"]
        action = f"/experiments/{experiment}/archive"
        assert browser.post(action, data={"csrf_token": token}).status_code == 403  # cookie session, no Origin
        assert browser.post(action, data={}, headers={"Origin": guarded.url}).status_code == 403  # no CSRF token
        done = browser.post(action, data={"csrf_token": token}, headers={"Origin": guarded.url})
        assert done.status_code == 303
        state = browser.get(f"/experiments/{experiment}.json").json()["experiment"]["storage_state"]
        assert state == "ARCHIVED"
