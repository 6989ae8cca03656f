"""kfbox.paging: one page-token scheme for every list (KFP offsets, registry keysets)."""

from __future__ import annotations

import base64
import json

import pytest

from kfbox.errors import InvalidInput
from kfbox.paging import PageTokens
from kfbox.pipelines import listing
from kfbox.pipelines.listing import Listing

SCOPE = "registry\nCREATE_TIME\nFalse\nmodel_versions"


def test_a_token_gives_back_its_position_and_is_the_same_for_the_same_page() -> None:
    tokens = PageTokens(b"k" * 32)
    token = tokens.issue([1700000000000, 42], SCOPE)
    assert tokens.read(token, SCOPE, "nextPageToken") == [1700000000000, 42]
    # the upstream registry pager stops when the first page's token comes round again
    assert tokens.issue([1700000000000, 42], SCOPE) == token


@pytest.mark.parametrize("change", ["scope", "payload", "signature", "secret", "length"])
def test_anything_but_an_issued_token_is_a_400_naming_the_parameter(change: str) -> None:
    tokens = PageTokens(b"k" * 32)
    token = tokens.issue([5, 7], SCOPE)
    payload, _, signature = token.partition(".")
    scope, reader = SCOPE, tokens
    if change == "scope":
        scope = SCOPE.replace("False", "True")
    elif change == "payload":
        token = base64.urlsafe_b64encode(json.dumps([5, 8]).encode()).decode().rstrip("=") + "." + signature
    elif change == "signature":
        token = payload + "." + signature[::-1]
    elif change == "secret":
        reader = PageTokens(b"x" * 32)  # another server, or this one after a restart
    else:
        token = payload + "." + signature + "A" * 600
    with pytest.raises(InvalidInput, match=r"nextPageToken .* was not issued by this server"):
        reader.read(token, scope, "nextPageToken")


def test_servers_have_their_own_secret() -> None:
    assert PageTokens().secret != PageTokens().secret


def test_kfp_lists_page_by_offset_in_tokens_scoped_to_list_sort_and_filter() -> None:
    flt = json.dumps({"predicates": [{"key": "display_name", "operation": "EQUALS", "string_value": "a"}]})
    first = Listing.parse("runs", flt, "created_at desc", 20, None)
    token = first.token_at(40)
    assert Listing.parse("runs", flt, "created_at desc", 5, token).offset == 40  # page_size may change
    # the same filter written with its keys in another order is the same filter
    same = json.dumps({"predicates": [{"string_value": "a", "operation": "EQUALS", "key": "display_name"}]})
    assert Listing.parse("runs", same, "created_at DESC", 20, token).offset == 40
    for other in [Listing.parse("experiments", flt, "created_at desc", 20, token),
                  Listing.parse("runs", flt, "created_at asc", 20, token),
                  Listing.parse("runs", flt, "display_name desc", 20, token),
                  Listing.parse("runs", None, "created_at desc", 20, token),
                  Listing.parse("runs", flt, "created_at desc", 20, token).narrowed([]),
                  Listing.parse("runs", flt, "created_at desc", 20, token).narrowed(first.predicates, "display_name")]:
        with pytest.raises(InvalidInput, match=r"page_token .* was not issued by this server for this list"):
            _ = other.offset
    forged = listing.TOKENS.issue(-1, first.scope)
    with pytest.raises(InvalidInput, match="does not hold a page of this list"):
        _ = Listing.parse("runs", flt, None, 20, forged).offset
    with pytest.raises(InvalidInput, match=r"page_token .* was not issued"):
        _ = Listing.parse("runs", None, None, 20, base64.urlsafe_b64encode(b'{"offset": 40}').decode()).offset
