"""One identity per user-visible name, whatever Unicode form the client typed it in.

``café`` can arrive as NFC (``caf\\u00e9``, one code point) or NFD (``cafe\\u0301``, ``e`` plus a
combining accent); they look the same everywhere, so they must be one pipeline, one experiment,
one registered model. Every place that stores a name or checks it for uniqueness passes it
through :func:`normalize_name` first (the stored value is the NFC form).

Kubernetes object names (InferenceService) are DNS-1123 labels and must be ASCII anyway:
:func:`check_dns1123_label` refuses anything else with the Kubernetes wording.

Example::

    normalize_name("cafe\\u0301") == normalize_name("caf\\u00e9") == "caf\\u00e9"
"""

from __future__ import annotations

import re
import unicodedata
from typing import overload

from kfbox.errors import InvalidInput

DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1123_LABEL_MAX = 63
# a user-visible name's length limit: what the tables store (upstream's VARCHAR(255))
NAME_MAX = 255


@overload
def normalize_name(name: str) -> str: ...
@overload
def normalize_name(name: None) -> None: ...
def normalize_name(name: str | None) -> str | None:
    """The NFC form of ``name`` (``None`` stays ``None``): the one identity of a user-visible name."""
    if name is None:
        return None
    return unicodedata.normalize("NFC", name)


def name_problem(name: str) -> str | None:
    """What is wrong with a user-visible name (pipeline, experiment, registered model...), or None.

    1 to :data:`NAME_MAX` characters and no control characters: NUL cannot be stored in
    PostgreSQL, and the others are invisible in every listing.
    """
    if not 1 <= len(name) <= NAME_MAX:
        return f"must be 1 to {NAME_MAX} characters long (got {len(name)})"
    bad = next((ch for ch in name if ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0), None)
    return None if bad is None else f"must not contain control characters (found U+{ord(bad):04X})"


def check_dns1123_label(name: str, kind: str = "InferenceService") -> str:
    """``name`` when it is a valid Kubernetes object name (RFC 1123 label), else InvalidInput.

    The message mirrors the API server's so that clients written against Kubernetes read it.
    """
    if len(name) <= DNS1123_LABEL_MAX and DNS1123_LABEL.fullmatch(name):
        return name
    hint = ""
    if not name.isascii():
        hint = " Names must be ASCII; a non-ASCII name (accents included) cannot be a Kubernetes name."
    raise InvalidInput(
        f"{kind} {name!r} is invalid: metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 label "
        "must consist of lower case alphanumeric characters or '-', and must start and end with an "
        f"alphanumeric character (e.g. 'my-name', or '123-abc', regex used for validation is "
        f"'[a-z0-9]([-a-z0-9]*[a-z0-9])?'), at most {DNS1123_LABEL_MAX} characters.{hint}")
