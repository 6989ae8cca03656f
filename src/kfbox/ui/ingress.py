"""The HAProxy data plane as the deployment pages show it, and which door their "try it" snippets use.

With ``kfbox up --data-plane haproxy`` an InferenceService also answers on the ingress port, by path
(``<ingress>/serving/<namespace>/<name>/...``) or by Host (``Host: <name>.<namespace>.<domain>`` sent to
``<ingress>``), and HAProxy sends that request straight to a ready replica, without the hop through kfbox's
Python gateway: the faster door, so the snippets use it while HAProxy is up. While it is restarting or was
given up they use kfbox's own port, which serves every request all along. With the Python gateway alone
(the default) nothing here is shown: :func:`data_plane` is None.

Example::

    entrance = ingress(platform, "default", "iris")  # None with the Python gateway alone
    door(entrance, gateway_url="http://127.0.0.1:8080/serving/default/iris")
    # {"url": "http://127.0.0.1:8081/serving/default/iris", "ingress": True, "note": "These use the HAProxy..."}
"""

from __future__ import annotations

from typing import Any

from kfbox.server.platform import Platform

NOTES = {
    "up": "These use the HAProxy ingress: the faster door, it sends the request straight to a ready replica "
          "without the hop through kfbox's Python gateway. kfbox's own port (the URL above) answers the same "
          "request.",
    "restarting": "HAProxy is restarting, so these use kfbox's own port, which serves every request meanwhile.",
    "stopped": "HAProxy was given up (see the data plane line above), so these use kfbox's own port, which "
               "serves every request.",
}
FORM_NOTE = "The Predict button asks through kfbox's own port: the dashboard's server sends the request."


def data_plane(platform: Platform) -> dict[str, Any] | None:
    """The data plane's URL, state (``up``, ``restarting``, ``stopped``) and health line; None when it is off."""
    plane = platform.services.data_plane
    if plane is None:
        return None
    return {"url": plane.url, "state": plane.state, "health": plane.health()}


def ingress(platform: Platform, namespace: str, name: str) -> dict[str, Any] | None:
    """One InferenceService's addresses on the ingress port (path and Host form) and the data plane's state;
    None when the data plane is off."""
    plane = data_plane(platform)
    if plane is None:
        return None
    return {**plane, "path_url": f"{plane['url']}/serving/{namespace}/{name}",
            "host": f"{name}.{namespace}.{platform.settings.ingress_domain}"}


def door(entrance: dict[str, Any] | None, gateway_url: str) -> dict[str, Any]:
    """The base URL of the snippets (``entrance``'s path form, from :func:`ingress`, while HAProxy is up; else
    ``gateway_url``) and a note saying which and why; no note with the Python gateway alone."""
    if entrance is None:
        return {"url": gateway_url, "ingress": False, "note": ""}
    up = entrance["state"] == "up"
    return {"url": entrance["path_url"] if up else gateway_url, "ingress": up,
            "note": f"{NOTES[entrance['state']]} {FORM_NOTE}"}
