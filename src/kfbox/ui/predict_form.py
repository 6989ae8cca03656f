"""The "try it" form of a deployment that speaks the V2 inference protocol, generated from the
model's own metadata (``GET /v2/models/NAME``: each input's name, datatype and shape).

One form field per element of each input row: an input of shape ``[-1, 4]`` is four fields
(``-1`` is the batch), one of shape ``[-1]`` or ``[-1, 1]`` is one. The form's values become one
V2 request row: ``{"inputs": [{"name", "datatype", "shape": [1, ...], "data"}]}``. A model whose
metadata lists no inputs (stock sklearn servers) keeps the V1 form.

Example::

    fields = v2_fields({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]})
    body = v2_request(fields, ["5.1", "3.5", "1.4", "0.2"])
"""

from __future__ import annotations

import json
import math
from typing import Any

from kfbox.errors import InvalidInput

NUMERIC = {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
DATATYPES = NUMERIC | {"BOOL", "BYTES"}
MAX_FIELDS = 64


def v2_fields(metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """The form's fields from V2 model metadata; [] when it lists no inputs. Bad metadata -> InvalidInput."""
    inputs = metadata.get("inputs") or []
    if not isinstance(inputs, list):
        raise InvalidInput(f"The model's metadata has inputs {inputs!r}, not a list.")
    fields: list[dict[str, Any]] = []
    for spec in inputs:
        name, datatype, shape = spec.get("name"), str(spec.get("datatype", "")).upper(), spec.get("shape") or [-1]
        if not isinstance(name, str) or not name or datatype not in DATATYPES or not isinstance(shape, list) \
                or not all(isinstance(d, int) for d in shape):
            raise InvalidInput(f"The model's metadata describes an input the form cannot show: {spec!r}.")
        batched = shape[0] == -1
        row = [max(d, 1) for d in (shape[1:] if batched else shape)]
        count = math.prod(row)
        if len(fields) + count > MAX_FIELDS:
            raise InvalidInput(f"The model takes more than {MAX_FIELDS} values a row; use the API for it.")
        for i in range(count):
            fields.append({"input": name, "datatype": datatype, "index": i, "elements": count,
                           "shape": [1, *row] if batched else row,
                           "label": name if count == 1 else f"{name}[{i}]",
                           "kind": "number" if datatype in NUMERIC else "text"})
    return fields


def _value(raw: str, field: dict[str, Any]) -> Any:
    datatype, label = field["datatype"], field["label"]
    if datatype == "BYTES":
        return raw
    if datatype == "BOOL":
        if raw.lower() not in ("true", "false", "1", "0"):
            raise InvalidInput(f"{label} is a BOOL: enter true or false, not {raw!r}.")
        return raw.lower() in ("true", "1")
    try:
        number = float(raw)
    except ValueError:
        raise InvalidInput(f"{label} is a {datatype}: enter a number, not {raw!r}.") from None
    if datatype.startswith(("INT", "UINT")):
        if not number.is_integer():
            raise InvalidInput(f"{label} is a {datatype}: enter a whole number, not {raw!r}.")
        return int(number)
    return number


def v2_request(fields: list[dict[str, Any]], values: list[str]) -> dict[str, Any]:
    """One V2 inference request row from the form's values (in field order)."""
    if len(values) != len(fields):
        raise InvalidInput(f"The form has {len(fields)} fields; got {len(values)} values. Reload the page.")
    tensors: dict[str, dict[str, Any]] = {}
    for field, raw in zip(fields, values, strict=True):
        tensor = tensors.setdefault(field["input"], {"name": field["input"], "datatype": field["datatype"],
                                                     "shape": field["shape"], "data": []})
        tensor["data"].append(_value(raw.strip(), field))
    return {"inputs": list(tensors.values())}


def v2_predictions(reply: dict[str, Any]) -> list[Any]:
    """The first output's values, flattened (a class index or a number per row)."""
    outputs = reply.get("outputs") or []
    if not outputs or not isinstance(outputs[0], dict):
        raise InvalidInput(f"The model's V2 reply has no outputs: {json.dumps(reply)[:300]}.")
    data = outputs[0].get("data") or []
    flat: list[Any] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    return flat


def v2_snippets(url: str, name: str, body: dict[str, Any], token: bool) -> dict[str, str]:
    """The same V2 request as curl and Python."""
    return request_snippets(f"{url}/v2/models/{name}/infer", body, token, "response.json()['outputs'][0]['data']")


def request_snippets(endpoint: str, body: dict[str, Any], token: bool, result: str) -> dict[str, str]:
    """A predict request as curl and as Python (httpx) that prints ``result``, with the token when one is set."""
    auth = ' -H "Authorization: Bearer $KFBOX_TOKEN"' if token else ""
    py_auth = ', headers={"Authorization": f"Bearer {os.environ[\'KFBOX_TOKEN\']}"}' if token else ""
    return {"curl": f"curl -s {endpoint}{auth} -H 'Content-Type: application/json' -d '{json.dumps(body)}'",
            "python": ("import httpx" + (", os" if token else "") + "\n\n"
                       f"response = httpx.post({endpoint!r}, json={body!r}{py_auth})\n"
                       f"print({result})")}
