"""KServe's error body, ``{"error": "..."}``, from whatever a replica answered an error with.

Every door to a replica answers errors so: kfbox's gateway (:mod:`kfbox.serving.gateway`) and a replica
serving a handed-off connection itself (:mod:`kfbox.serving.handoff_replica`); HAProxy's configuration does
the same in its own terms (:mod:`kfbox.serving.haproxy_config`).
"""

from __future__ import annotations

import json


def kserve_error_body(content: bytes) -> bytes:
    """Replicas answer most errors as ``{"error": ...}``; FastAPI validation errors are reshaped to match."""
    try:
        body = json.loads(content)
    except ValueError:
        return json.dumps({"error": content.decode(errors="replace") or "error"}).encode()
    if isinstance(body, dict) and "error" in body:
        return content
    if isinstance(body, dict) and isinstance(body.get("detail"), list):
        parts = [f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in body["detail"]
                 if isinstance(d, dict)]
        return json.dumps({"error": "Invalid request: " + "; ".join(parts)}).encode()
    return json.dumps({"error": body.get("detail", body) if isinstance(body, dict) else body}).encode()
