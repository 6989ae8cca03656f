"""The dashboard's pages over HTTP against a real ``kfbox up`` with real runs and models: each page
renders, has a ``.json`` twin, escapes user text, sends a script-free CSP, and refuses forged forms.
(The browser's view of the same pages is tests/e2e/test_dashboard_browser.py.)"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from kfbox import __version__
from tests.support import ServerProcess
from tests.ui.seed import SCRIPT, SeededDashboard, compiled, wait_run


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def server(seeded_dashboard: SeededDashboard) -> ServerProcess:
    return seeded_dashboard.server


def page(http: httpx.Client, path: str, status: int = 200) -> str:
    reply = http.get(path, headers={"Accept": "text/html"})
    assert reply.status_code == status, (path, reply.text[-800:])
    assert reply.headers["content-type"].startswith("text/html")
    csp = reply.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "<script>" not in reply.text  # every script is a file (<script src=...>)
    return reply.text


def test_home_shows_health_counts_and_recent_runs(http: httpx.Client, seeded: dict[str, Any]) -> None:
    html = page(http, "/")
    assert "healthy" in html and "accept &lt;b&gt;me&lt;/b&gt;" in html
    twin = http.get("/index.json").json()
    assert twin["counts"]["runs"] >= 3 and twin["counts"]["models"] >= 1 and twin["health"]["ok"]
    assert {r["run_id"] for r in twin["recent_runs"]} >= {seeded["good"], seeded["bad"]}


@pytest.mark.parametrize("path", ["/", "/runs", "/runs?state=FAILED&sort=duration&order=asc", "/experiments",
                                  "/pipelines", "/models", "/deployments", "/artifacts", "/compare",
                                  "/pipeline/", "/runs/{good}", "/runs/{good}?open=*", "/runs/{bad}?task=explode",
                                  "/runs/{wide}", "/models/{model}", "/artifacts?run={good}",
                                  "/compare?runs={good}&runs={bad}", "/runs/new?from={good}"])
def test_every_page_renders_and_has_a_json_twin(http: httpx.Client, seeded: dict[str, Any], path: str) -> None:
    path = path.format(**seeded)
    html = page(http, path)
    assert f'<span class="version">v{__version__}</span>' in html  # kfbox's, never a run's or a pipeline's
    twin = re.search(r'href="([^"]+)" rel="alternate" type="application/json"', html)
    assert twin is not None
    reply = http.get(twin.group(1).replace("&amp;", "&"))
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json", reply.text[:300]


def test_model_description_script_renders_as_text(http: httpx.Client, seeded: dict[str, Any]) -> None:
    for path in ("/models", f"/models/{seeded['model']}"):
        html = page(http, path)
        assert SCRIPT not in html
        assert "&lt;script&gt;document.title=&#39;owned&#39;&lt;/script&gt;" in html


def test_a_model_page_is_found_by_name_too(http: httpx.Client, seeded: dict[str, Any]) -> None:
    """``/models/<name>`` is the URL people type; it was a 400 ("not a valid id")."""
    by_id = http.get(f"/models/{seeded['model']}.json").json()
    html = page(http, f"/models/{quote(by_id['model']['name'])}")
    assert by_id["model"]["name"] in html
    assert http.get(f"/models/{quote(by_id['model']['name'])}.json").json()["model"]["id"] == by_id["model"]["id"]
    missing = page(http, "/models/no-such-model", status=404)
    assert "No model is named" in missing and "/models" in missing


def test_runs_list_filters_sorts_searches_and_pages(http: httpx.Client, seeded: dict[str, Any]) -> None:
    failed = http.get("/runs.json", params={"state": "FAILED"}).json()
    assert {r["state"] for r in failed["runs"]} == {"FAILED"}
    assert seeded["bad"] in {r["run_id"] for r in failed["runs"]}
    found = http.get("/runs.json", params={"q": "accept"}).json()
    assert [r["run_id"] for r in found["runs"]] == [seeded["good"]]
    by_duration = http.get("/runs.json", params={"sort": "duration", "order": "desc"}).json()["runs"]
    durations = [r["duration_ms"] for r in by_duration if r["duration_ms"] is not None]
    assert durations == sorted(durations, reverse=True)
    first = http.get("/runs.json", params={"page_size": 1}).json()
    assert len(first["runs"]) == 1 and first["total"] >= 3 and first["next_page_token"]
    second = http.get("/runs.json", params={"page_size": 1, "page_token": first["next_page_token"]}).json()
    assert second["runs"][0]["run_id"] != first["runs"][0]["run_id"]
    assert http.get("/runs", params={"sort": "nonsense"}).status_code == 400


def test_metric_columns_show_values_from_metrics_artifacts(http: httpx.Client, seeded: dict[str, Any]) -> None:
    body = http.get("/runs.json", params={"metrics": "accuracy", "q": "accept"}).json()
    assert body["metric_columns"] == ["accuracy"] and "accuracy" in body["metric_names"]
    assert body["runs"][0]["metrics"]["accuracy"] > 0.5
    html = page(http, "/runs?metrics=accuracy&q=accept")
    assert re.search(r'<th scope="col" class="num"><a href="[^"]*">accuracy', html)


def test_failing_task_logs_are_readable_after_the_run_ended(http: httpx.Client, seeded: dict[str, Any]) -> None:
    html = page(http, f"/runs/{seeded['bad']}?task=explode")
    assert "ValueError: boom: bad input" in html  # in the log panel, not only the error line
    assert re.search(r'<th scope="row">message</th><td><code>bad input</code>', html)  # the value it got
    log = http.get(f"/runs/{seeded['bad']}/log", params={"task": "explode"})
    assert "Traceback" in log.text and int(log.headers["x-log-offset"]) == len(log.content)
    again = http.get(f"/runs/{seeded['bad']}/log", params={"task": "explode", "offset": log.headers["x-log-offset"]})
    assert again.text == ""


def test_run_page_draws_the_ir_with_collapsed_groups(http: httpx.Client, seeded: dict[str, Any]) -> None:
    body = http.get(f"/runs/{seeded['good']}.json").json()
    nodes = {n["id"]: n for n in body["graph"]["nodes"]}
    assert nodes["exit-handler-1"]["expandable"] and nodes["exit-handler-1"]["state"] == "SUCCEEDED"
    assert nodes["report"]["state"] == "SUCCEEDED"
    drawn = re.search(r'data-node="exit-handler-1".*?</g>', page(http, f"/runs/{seeded['good']}"), re.S)
    assert drawn and f"dag · {nodes['exit-handler-1']['count']} tasks" in drawn.group(0)  # what ran inside
    opened = http.get(f"/runs/{seeded['good']}.json", params={"open": "*"}).json()
    inner = {n["id"]: n for n in opened["graph"]["nodes"]}
    assert inner["exit-handler-1/condition-branches-3/condition-4/train"]["state"] == "SUCCEEDED"
    assert inner["exit-handler-1/for-loop-2/square"]["state"] == "SUCCEEDED"
    wide = http.get(f"/runs/{seeded['wide']}.json").json()
    assert wide["node_count"] == 604 and len(wide["graph"]["nodes"]) == 602  # two inner tasks stay collapsed
    assert wide["node_states"]["step-3"] == "FAILED"


def test_task_panel_shows_metrics_and_confusion_matrix(http: httpx.Client, seeded: dict[str, Any]) -> None:
    html = page(http, f"/runs/{seeded['good']}?task=exit-handler-1/condition-branches-3/condition-4/train")
    assert "Confusion matrix" in html and "accuracy" in html
    assert "componentInputParameter" not in html and "scale" in html  # inputs described in words


def test_compare_marks_the_best_and_hides_equal_rows(http: httpx.Client, seeded: dict[str, Any]) -> None:
    runs = [seeded["small"], seeded["good"]]
    body = http.get("/compare.json", params={"runs": runs}).json()
    assert [r["run_id"] for r in body["runs"]] == runs
    assert [row["name"] for row in body["parameters"]] == ["items", "model_name", "threshold"]  # all differ
    accuracy = next(row for row in body["metrics"] if row["name"] == "accuracy")
    assert accuracy["cells"][1] > accuracy["cells"][0] and accuracy["best"] == 1
    html = page(http, f"/compare?runs={runs[0]}&runs={runs[1]}")
    assert re.search(r'<td class="num best">0\.9', html)
    same = http.get("/compare.json", params={"runs": [seeded["good"], seeded["small"]], "all": True}).json()
    assert len(same["parameters"]) == 3 and len(same["metrics"]) >= 1


def csrf_cookie(http: httpx.Client) -> str:
    http.get("/runs", headers={"Accept": "text/html"})
    token = http.cookies.get("kfbox_csrf")
    assert token
    return str(token)


def test_form_posts_need_the_csrf_token(server: ServerProcess, http: httpx.Client, seeded: dict[str, Any]) -> None:
    run = seeded["bad"]
    token = csrf_cookie(http)
    missing = http.post(f"/runs/{run}/archive", data={})
    assert missing.status_code == 403 and "CSRF" in missing.text
    wrong = http.post(f"/runs/{run}/archive", data={"csrf_token": "x" * 43})
    assert wrong.status_code == 403
    foreign = http.post(f"/runs/{run}/archive", data={"csrf_token": token}, headers={"Origin": "http://evil.test"})
    assert foreign.status_code == 403
    assert http.get(f"/apis/v2beta1/runs/{run}").json()["storage_state"] == "AVAILABLE"
    done = http.post(f"/runs/{run}/archive", data={"csrf_token": token}, headers={"Origin": server.url})
    assert done.status_code == 303 and done.headers["location"] == f"/runs/{run}"
    assert http.get(f"/apis/v2beta1/runs/{run}").json()["storage_state"] == "ARCHIVED"
    http.post(f"/runs/{run}/restore", data={"csrf_token": token})
    assert http.get(f"/apis/v2beta1/runs/{run}").json()["storage_state"] == "AVAILABLE"


def test_foreign_host_is_refused(http: httpx.Client) -> None:
    reply = http.get("/runs", headers={"Host": "attacker.example"})
    assert reply.status_code == 400 and "Host" in reply.text


def test_create_run_form_validates_and_starts_a_run(http: httpx.Client, seeded: dict[str, Any]) -> None:
    spec = compiled("failing", seeded["spec_folder"])
    upload = http.post("/apis/v2beta1/pipelines/upload", files={"uploadfile": ("failing.yaml",
                       (Path(seeded["spec_folder"]) / "failing.yaml").read_bytes())})
    assert upload.status_code == 200, upload.text
    pipeline_id = upload.json()["pipeline_id"]
    html = page(http, f"/runs/new?pipeline={pipeline_id}")
    assert 'name="param.message" value="bad input"' in html
    version = re.search(r'name="version" value="([^"]+)"', html)
    assert version is not None and spec["pipelineInfo"]["name"] == "failing"
    token = csrf_cookie(http)
    form = {"csrf_token": token, "pipeline": pipeline_id, "version": version.group(1),
            "display_name": "from the form", "param.message": "typed in"}
    created = http.post("/runs/new", data=form)
    assert created.status_code == 303, created.text
    run_id = created.headers["location"].rsplit("/", 1)[1]
    assert http.get(f"/apis/v2beta1/runs/{run_id}").json()["runtime_config"]["parameters"] == {"message": "typed in"}
    empty = http.post("/runs/new", data={**form, "display_name": ""})
    assert empty.status_code == 400 and "display_name is required" in empty.text


def test_artifact_paths_never_leave_the_artifacts_root(server: ServerProcess, http: httpx.Client,
                                                       seeded: dict[str, Any]) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{server.home / 'kfbox.db'}")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO pipelines_artifacts (run_id, task_id, direction, key, name, uri, "
                          "schema_title, metadata, created_ms) VALUES (:r, 't', 'output', 'evil', 'evil', "
                          "'/etc/passwd', 'system.Dataset', '{}', :ms)"), {"r": seeded["good"],
                                                                          "ms": int(time.time() * 1000)})
        evil = conn.execute(text("SELECT max(id) FROM pipelines_artifacts")).scalar()
    engine.dispose()
    assert http.get(f"/artifacts/{evil}/download").status_code == 403
    assert "root:" not in http.get(f"/artifacts/{evil}").text
    good = http.get(f"/artifacts.json?run={seeded['good']}").json()
    model = next(a for _, items in good["tasks"] for a in items if a["key"] == "model")
    assert http.get(f"/artifacts/{model['id']}/download").status_code == 200
    climb = http.get(f"/artifacts/{model['id']}/download", params={"file": "../../../../etc/passwd"})
    assert climb.status_code in (400, 403)


def test_kfp_link_page_is_a_script_that_reads_the_fragment(http: httpx.Client) -> None:
    html = page(http, "/pipeline/")
    assert '<script src="/static/kfp-links.js" defer></script>' in html
    script = http.get("/static/kfp-links.js").text
    assert "runs|experiments|pipelines" in script and "location.replace" in script


def test_pipeline_upload_form_and_pipeline_page(http: httpx.Client, seeded: dict[str, Any]) -> None:
    token = csrf_cookie(http)
    package = (Path(seeded["spec_folder"]) / "acceptance.yaml").read_bytes()
    refused = http.post("/pipelines/upload", files={"file": ("a.yaml", package)}, data={"name": "via form"})
    assert refused.status_code == 403
    made = http.post("/pipelines/upload", files={"file": ("a.yaml", package)},
                     data={"name": "via form", "csrf_token": token})
    assert made.status_code == 303, made.text
    html = page(http, made.headers["location"])
    assert "via form" in html and 'data-node="exit-handler-1"' in html and "threshold" in html
    assert f'<span class="version">v{__version__}</span>' in html  # the header, not the pipeline version's id
    bad = http.post("/pipelines/upload", files={"file": ("b.yaml", b"not: [a pipeline")},
                    data={"csrf_token": token})
    assert bad.status_code == 400 and "kfbox compile" in bad.text


def test_register_model_form_goes_through_the_registry_api(http: httpx.Client, seeded: dict[str, Any]) -> None:
    token = csrf_cookie(http)
    form = {"csrf_token": token, "name": "from-form", "version": "v1", "uri": "file:///models/x",
            "format": "sklearn", "description": "made in the dashboard"}
    made = http.post("/models/register", data=form)
    assert made.status_code == 303, made.text
    again = http.post("/models/register", data={**form, "version": "v2"})  # same model, a second version
    assert again.headers["location"] == made.headers["location"]
    body = http.get(made.headers["location"] + ".json").json()
    assert [v["name"] for v in body["versions"]] == ["v2", "v1"]
    assert body["versions"][0]["uri"] == "file:///models/x" and body["versions"][0]["format"] == "sklearn"
    clash = http.post("/models/register", data={**form, "version": "v2"})
    assert clash.status_code == 409 and "already exists" in clash.text


def test_retry_button_reruns_a_failed_run_in_place(http: httpx.Client, seeded: dict[str, Any]) -> None:
    run = seeded["bad"]
    before = http.get(f"/apis/v2beta1/runs/{run}").json()["state_history"]
    assert 'action="/runs/' + run + '/retry"' in page(http, f"/runs/{run}")
    done = http.post(f"/runs/{run}/retry", data={"csrf_token": csrf_cookie(http)})
    assert done.status_code == 303 and done.headers["location"] == f"/runs/{run}"
    after = wait_run(http, run)
    assert len(after["state_history"]) > len(before) and after["state"] == "FAILED"  # it fails by design
    assert 'action="/runs/' + seeded["good"] + '/retry"' not in page(http, f"/runs/{seeded['good']}")


def test_artifacts_render_inline_and_safely(http: httpx.Client, seeded: dict[str, Any]) -> None:
    html = page(http, f"/runs/{seeded['kinds']}?task=report")
    assert "<h1>Notes</h1>" in html and "<strong>bold</strong>" in html  # Markdown rendered
    assert "&lt;script&gt;document.title" in html and 'href="javascript' not in html  # no raw HTML, no js: links
    assert re.search(r'<iframe class="sandboxed" sandbox="" src="/artifacts/\d+/raw"', html)
    assert "<th scope=\"col\">a</th>" in html and "First 20 of 30 rows" in html  # CSV preview
    assert "ROC curve, AUC" in html and "<polyline" in html
    raw_src = re.search(r'src="(/artifacts/\d+/raw)"', html)
    assert raw_src is not None
    raw = http.get(raw_src.group(1))
    assert raw.headers["content-security-policy"].startswith("sandbox") and "<script>" in raw.text
    assert raw.headers["content-type"].startswith("text/html")


def test_model_versions_compare_side_by_side(http: httpx.Client, seeded: dict[str, Any]) -> None:
    model = http.get(f"/models/{seeded['model']}.json").json()
    ids = [v["id"] for v in model["versions"]]
    body = http.get(f"/models/{seeded['model']}.json", params={"compare": ids}).json()
    accuracy = next(r for r in body["comparison"]["rows"] if r["name"] == "accuracy")
    assert body["comparison"]["versions"] == ["v2", "v1"] and accuracy["best"] == 0  # v2: 0.91 > 0.9
    html = page(http, f"/models/{seeded['model']}?compare={ids[0]}&compare={ids[1]}")
    assert 'form="compare-versions"' in html and '<td class="num best">0.91' in html
