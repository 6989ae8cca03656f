"""List page tokens: opaque to clients, signed by this server, bound to the list they page.

Every kfbox list pages with one kind of token, whatever the wire name (KFP's ``page_token`` /
``next_page_token``, the Model Registry's ``nextPageToken``): ``<payload>.<signature>``, where the
payload is base64url JSON of the position and the signature an HMAC-SHA256 (per-server secret) over
the payload and the list's *scope* (which list, order and filter). A forged or edited token, one
replayed against another list or order, or one from before a restart is a 400 naming the parameter,
never a wrong page. What the position holds is the lister's business: the registry keeps a keyset
(sort value, id) so page N costs what page 1 does; KFP lists keep an offset, because they sort on any
field (nullable ones too) and the dashboard jumps to offsets.

A token holds no time and no nonce: the same page gives the same token, which the upstream Model
Registry client's pager relies on (it stops when the first page's token comes round again). Tokens
expire with the secret, when the server restarts.

Example::

    tokens = PageTokens()
    token = tokens.issue([1700000000000, 42], scope="registry model_versions CREATE_TIME asc")
    tokens.read(token, "registry model_versions CREATE_TIME asc", "nextPageToken")   # -> [1700000000000, 42]
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from typing import Any

from kfbox.errors import InvalidInput

MAX_TOKEN_CHARS = 512


class PageTokens:
    """Issues and reads page tokens with one secret (random per server process unless given)."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret or secrets.token_bytes(32)

    def issue(self, position: Any, scope: str) -> str:
        """A token for the page at ``position`` (any JSON value) of the list ``scope``."""
        payload = _b64(json.dumps(position, separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload, scope)}"

    def read(self, token: str, scope: str, param: str) -> Any:
        """The position ``token`` holds; :class:`InvalidInput` naming ``param`` unless this server issued it
        for ``scope``."""
        problem = InvalidInput(f"{param} {token[:80]!r} was not issued by this server for this list, order and "
                               f"filter (tokens also expire when the server restarts). Start again without {param}.")
        payload, _, signature = token.partition(".")
        if len(token) > MAX_TOKEN_CHARS or not hmac.compare_digest(signature.encode(),
                                                                   self._sign(payload, scope).encode()):
            raise problem
        try:
            return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
            raise problem from exc

    def _sign(self, payload: str, scope: str) -> str:
        message = f"{payload}\n{scope}".encode()
        return _b64(hmac.new(self.secret, message, hashlib.sha256).digest()[:18])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
