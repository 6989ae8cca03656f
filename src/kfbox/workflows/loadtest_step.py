"""The short load test that closes ``kfbox example``: the same engine as ``kfbox loadtest``."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

from kfbox.loadtest.runner import LoadSpec, run_load


def short_loadtest(endpoint: str, request: dict[str, Any], token: str | None, seconds: float, concurrency: int,
                   console: Console) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    spec = LoadSpec(url=endpoint, method="POST", body=json.dumps(request).encode(), headers=headers,
                    concurrency=concurrency, duration=seconds)
    with console.status(f"Load test: {concurrency} concurrent clients for {seconds:.0f}s..."):
        report = run_load(spec)
    return {"requests": report.total, "seconds": report.duration, "rps": report.rps,
            "p50_ms": report.percentile(50) * 1000, "p99_ms": report.percentile(99) * 1000,
            "errors": report.failed}
