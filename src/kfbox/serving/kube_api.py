"""Kubernetes ``Status`` errors for the resource API (``/api``, ``/apis/serving.kserve.io``).

kubectl, the kubernetes Python client and the kserve SDK read ``reason`` and ``code`` from a
``Status`` body (``kind: Status, apiVersion: v1, status: Failure``), so every error of these
routes has that shape: :class:`KubeStatus` carries the reason and the object's name, and
:func:`status_body` renders any other kfbox error by its HTTP status.

Example::

    raise KubeStatus(409, "AlreadyExists", 'inferenceservices.serving.kserve.io "iris" already exists',
                     name="iris")
"""

from __future__ import annotations

from typing import Any

from kfbox.errors import Conflict, InvalidInput, KfboxError, NotFound

GROUP = "serving.kserve.io"
PLURAL = "inferenceservices"
REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
           406: "NotAcceptable", 409: "Conflict", 410: "Expired", 413: "RequestEntityTooLarge",
           415: "UnsupportedMediaType", 422: "Invalid", 500: "InternalError", 501: "NotImplemented",
           503: "ServiceUnavailable", 504: "Timeout"}


class KubeStatus(KfboxError):
    """An error with a Kubernetes ``reason`` and ``details`` (name, group, kind, causes)."""

    def __init__(self, code: int, reason: str, message: str, *, name: str | None = None,
                 kind: str | None = PLURAL, group: str | None = GROUP,
                 causes: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status_code = code
        self.reason = reason
        self.details: dict[str, Any] = {}
        if name is not None:
            self.details["name"] = name
        if group:
            self.details["group"] = group
        if kind:
            self.details["kind"] = kind
        if causes:
            self.details["causes"] = causes

    def body(self) -> dict[str, Any]:
        return status_body(self.status_code, self.message, self.reason, self.details)


class KubeNotFound(KubeStatus, NotFound):
    """404: also a :class:`~kfbox.errors.NotFound`, for callers that catch the kfbox tree."""


class KubeConflict(KubeStatus, Conflict):
    """409 AlreadyExists or Conflict."""


class KubeInvalid(KubeStatus, InvalidInput):
    """400 BadRequest or 422 Invalid."""


def status_body(code: int, message: str, reason: str | None = None,
                details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``Status`` object, as the Kubernetes API server answers errors."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason or REASONS.get(code, "Unknown"), "code": code}
    if details:
        body["details"] = details
    return body


def not_found(name: str, kind: str = PLURAL, group: str = GROUP, namespace: str | None = None) -> KubeStatus:
    what = f"{kind}.{group}" if group else kind
    hint = f" in namespace {namespace}; list them with: kfbox serve list -n {namespace}" if namespace else ""
    return KubeNotFound(404, "NotFound", f'{what} "{name}" not found{hint}', name=name, kind=kind, group=group)


def already_exists(name: str, kind: str = PLURAL, group: str = GROUP) -> KubeStatus:
    what = f"{kind}.{group}" if group else kind
    return KubeConflict(409, "AlreadyExists", f'{what} "{name}" already exists', name=name, kind=kind, group=group)


def stale(name: str, given: str, current: int) -> KubeStatus:
    return KubeConflict(409, "Conflict", f'Operation cannot be fulfilled on {PLURAL}.{GROUP} "{name}": the object '
                      f"has been modified (resourceVersion {given} is stale, now {current}); please apply your "
                      "changes to the latest version and try again", name=name)


def invalid(name: str | None, message: str, field: str | None = None) -> KubeStatus:
    causes = [{"reason": "FieldValueInvalid", "message": message, **({"field": field} if field else {})}]
    label = name or "<unnamed>"
    return KubeInvalid(422, "Invalid", f'InferenceService.{GROUP} "{label}" is invalid: {message}',
                      name=name, kind="InferenceService", causes=causes)


def bad_request(message: str) -> KubeStatus:
    return KubeInvalid(400, "BadRequest", message, kind=None, group=None)
