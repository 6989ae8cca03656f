"""The dashboard's entry page: what the platform offers and where."""

from __future__ import annotations

from html import escape

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from kfbox import __version__
from kfbox.server.platform import Platform

LINKS = [
    ("/api/model_registry/v1alpha3/registered_models", "Model Registry", "registered models (Kubeflow Model Registry API v1alpha3)"),
    ("/pipeline/apis/v2beta1/runs", "Pipelines", "pipeline runs (KFP API v2beta1)"),
    ("/apis/serving.kserve.io/v1beta1/inferenceservices", "Serving", "KServe InferenceServices; predictions at /serving/{namespace}/{name}/v1 and /v2"),
    ("/metrics", "Metrics", "Prometheus metrics"),
    ("/docs", "API docs", "interactive OpenAPI documentation"),
    ("/openapi.json", "OpenAPI", "the OpenAPI document of everything served here"),
]


def install(app: FastAPI, platform: Platform) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        items = "\n".join(f'<li><a href="{escape(href)}">{escape(title)}</a> &mdash; {escape(text)}</li>'
                          for href, title, text in LINKS)
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kfbox</title>
<style>body{{font-family:system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}}</style></head>
<body><h1>kfbox</h1><p>Kubeflow's own APIs, embedded. Version {escape(__version__)}, serving at {escape(platform.url)}.</p>
<ul>{items}</ul></body></html>"""
