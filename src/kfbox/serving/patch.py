"""PATCH bodies and field ownership, as the Kubernetes API server applies them to custom resources.

* ``application/merge-patch+json`` — RFC 7386 (``kubectl patch --type merge``, the kubernetes
  client's ``patch_namespaced_custom_object``, client-side ``kubectl apply`` for CRDs).
* ``application/strategic-merge-patch+json`` — custom resources have no patch strategies, so
  kfbox treats it as a merge patch (a real API server answers 415 for custom resources; being
  lenient keeps ``kubectl patch`` without ``--type`` working).
* ``application/json-patch+json`` — RFC 6902, with the ``jsonpatch`` library.
* ``application/apply-patch+yaml`` — server-side apply: the body is the applier's whole intent;
  ``metadata.managedFields`` records which field manager owns which field, an apply that changes
  a field another manager owns is a 409 Conflict naming the fields unless ``force=true``, and
  fields the manager applied before but left out now are removed.

Lists are atomic (owned and replaced whole), as CRDs without list-type markers are.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import jsonpatch

from kfbox.apis import SERVING_API_VERSION as API_VERSION
from kfbox.errors import InvalidInput
from kfbox.parsing import load_json, load_yaml_documents
from kfbox.serving.kube_api import KubeStatus, bad_request

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"
PATCH_TYPES = (MERGE, STRATEGIC, JSON_PATCH, APPLY)
UNOWNED = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace"), ("status",)}
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SERVER_OWNED = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink")

Path = tuple[str, ...]


def patch_type(content_type: str | None) -> str:
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind not in PATCH_TYPES:
        raise KubeStatus(415, "UnsupportedMediaType",
                         f"the body of the request was in an unknown format ({kind or 'no Content-Type'}) - "
                         f"accepted media types include: {', '.join(PATCH_TYPES)}", kind=None, group=None)
    return kind


def parse_body(raw: bytes, kind: str) -> Any:
    """The body as a value, through kfbox's one decoder (depth caps, no YAML aliases), as a Status error."""
    try:
        if kind != APPLY:
            return load_json(raw, "The request body")
        docs = load_yaml_documents(raw.decode("utf-8", "replace"), "The request body")
    except InvalidInput as exc:
        raise bad_request(exc.message) from exc
    if len(docs) > 1:
        raise bad_request("the apply body holds more than one YAML document; send one object per request")
    return docs[0] if docs else None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def apply_patch(current: dict[str, Any], kind: str, body: Any) -> dict[str, Any]:
    """The object after a merge or JSON patch (server-side apply goes through :func:`server_side_apply`)."""
    if kind in (MERGE, STRATEGIC):
        if not isinstance(body, dict):
            raise bad_request("a merge patch must be a JSON object; send a list with "
                              f"Content-Type: {JSON_PATCH} for a JSON patch.")
        merged: dict[str, Any] = merge_patch(current, body)  # a dict patched by a dict is a dict
        return merged
    if not isinstance(body, list):
        raise bad_request("a JSON patch (RFC 6902) must be a list of operations, e.g. "
                          '[{"op": "replace", "path": "/spec/predictor/minReplicas", "value": 2}]')
    try:
        patched = jsonpatch.JsonPatch(body).apply(current)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
        raise KubeStatus(422, "Invalid", f"the JSON patch could not be applied: {exc}", kind=None,
                         group=None) from exc
    if not isinstance(patched, dict):
        raise bad_request("the JSON patch must leave an object")
    return patched


# --- field ownership ---------------------------------------------------------------------------
def leaves(obj: Any, prefix: Path = ()) -> dict[Path, Any]:
    """Every owned field of an object: leaf path -> value (maps recurse, lists are leaves)."""
    out: dict[Path, Any] = {}
    if isinstance(obj, dict) and (obj or not prefix):
        for key, value in obj.items():
            path = (*prefix, str(key))
            if path in UNOWNED or (prefix == ("metadata",) and key in SERVER_OWNED):
                continue
            out.update(leaves(value, path))
    else:
        out[prefix] = obj
    return out


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return tree


def from_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for key, sub in tree.items():
        if not key.startswith("f:"):
            continue
        path = (*prefix, key[2:])
        children = from_fields_v1(sub, path) if isinstance(sub, dict) else set()
        paths |= children or {path}
    return paths


def _owners(managed: list[dict[str, Any]]) -> list[tuple[str, str, set[Path]]]:
    return [(m.get("manager", ""), m.get("operation", "Update"), from_fields_v1(m.get("fieldsV1") or {}))
            for m in managed]


def _entries(owners: list[tuple[str, str, set[Path]]]) -> list[dict[str, Any]]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [{"manager": manager, "operation": operation, "apiVersion": API_VERSION, "time": now,
             "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(paths)}
            for manager, operation, paths in owners if paths]


def _get(obj: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return _MISSING
        obj = obj[key]
    return obj


def _remove(obj: dict[str, Any], path: Path) -> None:
    parents = [obj]
    for key in path[:-1]:
        child = parents[-1].get(key)
        if not isinstance(child, dict):
            return
        parents.append(child)
    parents[-1].pop(path[-1], None)
    for depth in range(len(parents) - 1, 0, -1):  # drop maps the removal left empty
        if not parents[depth]:
            parents[depth - 1].pop(path[depth - 1], None)


_MISSING = object()


def record_update(managed: list[dict[str, Any]], before: dict[str, Any] | None, after: dict[str, Any],
                  manager: str) -> list[dict[str, Any]]:
    """A create, replace or patch by ``manager``: it owns the fields it changed, others lose them."""
    old = leaves(before) if before is not None else {}
    new = leaves(after)
    changed = {p for p, v in new.items() if old.get(p, _MISSING) != v}
    removed = set(old) - set(new)
    owners = []
    mine: set[Path] = set()
    for name, operation, paths in _owners(managed):
        kept = {p for p in paths - removed - changed if p in new}
        if (name, operation) == (manager, "Update"):
            mine |= kept
        else:
            owners.append((name, operation, kept))
    owners.append((manager, "Update", mine | changed))
    return _entries(owners)


def server_side_apply(current: dict[str, Any] | None, applied: Any, managed: list[dict[str, Any]],
                      manager: str, force: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The object and managedFields after ``manager`` applies ``applied``; 409 on conflicts."""
    if not isinstance(applied, dict):
        raise bad_request("an apply patch must be a YAML or JSON object (the whole intended configuration)")
    intent = leaves(applied)
    base = current if current is not None else {}
    have = leaves(base)
    owners = _owners(managed)
    conflicts: dict[Path, list[str]] = {}
    for name, operation, paths in owners:
        if (name, operation) == (manager, "Apply"):
            continue
        for path in paths & set(intent):
            if have.get(path, _MISSING) != intent[path]:
                conflicts.setdefault(path, []).append(name)
    if conflicts and not force and _upgrades_client_side_apply(base, manager, set(conflicts)):
        force = True
    if conflicts and not force:
        causes = [{"type": "FieldManagerConflict", "message": f'conflict with "{who}" using {API_VERSION}',
                   "field": "." + ".".join(path)} for path, names in sorted(conflicts.items()) for who in names]
        listed = "\n".join(f"- {c['message']}: {c['field']}" for c in causes)
        plural = "s" if len(causes) > 1 else ""
        raise KubeStatus(409, "Conflict", f"Apply failed with {len(causes)} conflict{plural}: "
                         + (listed[2:] if len(causes) == 1 else "\n" + listed)
                         + "\nApply again with force=true (kubectl apply --server-side --force-conflicts) to take "
                         "these fields over.", name=(applied.get("metadata") or {}).get("name"), causes=causes)
    previous = next((paths for name, operation, paths in owners if (name, operation) == (manager, "Apply")), set())
    others = set().union(*(paths for name, operation, paths in owners if (name, operation) != (manager, "Apply")))
    result = merge_patch(base, _without_nulls(applied))
    for path in previous - set(intent) - others:  # applied before, left out now, nobody else wants it
        _remove(result, path)
    new_owners = [(name, op, paths - set(conflicts)) for name, op, paths in owners if (name, op) != (manager, "Apply")]
    new_owners.append((manager, "Apply", set(intent)))
    return result, _entries(new_owners)


def _upgrades_client_side_apply(current: dict[str, Any], manager: str, conflicts: set[Path]) -> bool:
    """The API server's move from client-side to server-side apply: ``kubectl`` may take over every
    field its ``last-applied-configuration`` annotation names without a conflict."""
    if manager != "kubectl":
        return False
    text = ((current.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    try:
        last = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return False
    return isinstance(last, dict) and conflicts <= set(leaves(last))


def _without_nulls(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _without_nulls(v) for k, v in obj.items() if v is not None}
    return obj
