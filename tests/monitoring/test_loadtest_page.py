"""A load test started from the deployment page: bounded, CSRF-checked, seen on the live chart, report kept."""

from __future__ import annotations

from typing import Any

import httpx

from tests.monitoring.conftest import SERVICES, Monitored
from tests.serving.helpers import wait_for

PAGE = f"/deployments/default/{SERVICES[1]}"  # maxReplicas 1: the load leaves the replica count alone


def _reports(client: httpx.Client) -> list[dict[str, Any]]:
    return client.get(f"{PAGE}/loadtests.json").json()["loadtests"]  # type: ignore[no-any-return]


def test_start_a_bounded_load_test_watch_it_and_keep_its_report(monitored: Monitored) -> None:
    with monitored.server.client() as client:
        client.get(PAGE, headers={"Accept": "text/html"})
        token = str(client.cookies.get("kfbox_csrf"))
        origin = {"Origin": monitored.server.url}
        assert client.post(f"{PAGE}/loadtest", data={"duration": "5"}).status_code == 403  # no CSRF token
        for field, value in (("duration", "601"), ("concurrency", "501"), ("duration", "0"), ("data", "{nope")):
            refused = client.post(f"{PAGE}/loadtest", data={"csrf_token": token, field: value}, headers=origin)
            assert refused.status_code == 400, (field, value, refused.text)
        def peak() -> float:
            body = client.get(f"/monitoring/series/default/{SERVICES[1]}", params={"minutes": 1}).json()
            return max((v for v in body["rps"] if v is not None), default=0.0)

        before = peak()
        started = client.post(f"{PAGE}/loadtest", data={"csrf_token": token, "duration": "6", "concurrency": "8"},
                              headers=origin)
        assert started.status_code == 303 and started.headers["location"].startswith(PAGE)
        again = client.post(f"{PAGE}/loadtest", data={"csrf_token": token, "duration": "6"}, headers=origin)
        assert again.status_code == 409 and "already running" in again.text
        assert _reports(client)[0]["running"] is True

        # the live chart's data shows the load over the fixture's few req/s of background traffic
        wait_for(lambda: peak() > before + 5, 40, f"the load on the chart (before: {before:.1f} req/s)")

        done = wait_for(lambda: (r := _reports(client)[0]) and not r["running"] and r, 60, "the report")
        report = done["report"]
        assert report["total"] > 20 and report["concurrency"] == 8 and report["failed"] == 0, report
        assert done["plot"] and client.get(f"{PAGE}/loadtests/{done['plot']}").text.lstrip().startswith("<")
        assert client.get(f"{PAGE}/loadtests/..%2Fsecret.json").status_code in (400, 404)  # the guard, or ours
        assert client.get(f"{PAGE}/loadtests/notes.txt").status_code == 404
