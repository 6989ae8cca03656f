"""Browser sessions on a real ``kfbox up --token``: /login trades the token for a signed cookie,
no open redirect, the cookie authenticates reads, and changes made with it need this Origin."""

from __future__ import annotations

import httpx
import pytest

from kfbox.server.session import MAX_AGE_SECONDS, Sessions
from tests.security.conftest import TOKEN
from tests.support import ServerProcess

EXPERIMENTS = "/apis/v2beta1/experiments"


@pytest.fixture(scope="module")
def server(token_server: ServerProcess) -> ServerProcess:
    return token_server


def _login(server: ServerProcess, token: str, next_: str = "/") -> httpx.Response:
    return httpx.post(f"{server.url}/login", data={"token": token, "next": next_},
                      headers={"Origin": server.url})


@pytest.fixture(scope="module")
def cookie(server: ServerProcess) -> str:
    reply = _login(server, TOKEN, EXPERIMENTS)
    return reply.headers["set-cookie"].split(";", 1)[0]


def test_login_page_is_a_form(server: ServerProcess) -> None:
    page = httpx.get(f"{server.url}/login?next=/runs")
    assert page.status_code == 200
    assert 'name="token"' in page.text and "/runs" in page.text  # the form keeps where to go next


def test_login_sets_a_strict_httponly_cookie_and_goes_next(server: ServerProcess) -> None:
    reply = _login(server, TOKEN, "/apis/v2beta1/runs?page_size=1")
    assert reply.status_code == 303
    assert reply.headers["location"] == "/apis/v2beta1/runs?page_size=1"
    attributes = [a.strip().lower() for a in reply.headers["set-cookie"].split(";")]
    assert attributes[0].startswith("kfbox_session=")
    assert "httponly" in attributes and "samesite=strict" in attributes and "path=/" in attributes
    assert TOKEN not in reply.headers["set-cookie"]


def test_next_may_come_in_the_query(server: ServerProcess) -> None:
    reply = httpx.post(f"{server.url}/login?next=/runs", data={"token": TOKEN}, headers={"Origin": server.url})
    assert reply.status_code == 303 and reply.headers["location"] == "/runs"
    evil = httpx.post(f"{server.url}/login?next=//evil.example", data={"token": TOKEN}, headers={"Origin": server.url})
    assert evil.headers["location"] == "/"


def test_wrong_token_sets_no_cookie(server: ServerProcess) -> None:
    reply = _login(server, "guess")
    assert reply.status_code == 401
    assert "set-cookie" not in reply.headers
    assert "Wrong token" in reply.text


@pytest.mark.parametrize("target", ["//evil.example/x", "http://evil.example/", "https:evil.example", "/\\evil.example",
                                    "\\\\evil.example", " //evil.example", "/\t/evil.example", "javascript:alert(1)"])
def test_next_is_never_another_site(server: ServerProcess, target: str) -> None:
    reply = _login(server, TOKEN, target)
    assert reply.status_code == 303
    assert reply.headers["location"] == "/"


def test_cookie_authenticates_reads(server: ServerProcess, cookie: str) -> None:
    assert httpx.get(server.url + EXPERIMENTS).status_code == 401
    reply = httpx.get(server.url + EXPERIMENTS, headers={"Cookie": cookie})
    assert reply.status_code == 200
    forged = cookie[:-3] + ("AAA" if not cookie.endswith("AAA") else "BBB")
    assert httpx.get(server.url + EXPERIMENTS, headers={"Cookie": forged}).status_code == 401


def test_changes_with_the_cookie_need_this_origin(server: ServerProcess, cookie: str) -> None:
    body = {"display_name": "made-by-cookie"}
    bare = httpx.post(server.url + EXPERIMENTS, json=body, headers={"Cookie": cookie})
    assert bare.status_code == 403 and "Origin" in bare.json()["message"]
    foreign = httpx.post(server.url + EXPERIMENTS, json=body, headers={"Cookie": cookie, "Origin": "http://evil.example"})
    assert foreign.status_code == 403
    own = httpx.post(server.url + EXPERIMENTS, json=body, headers={"Cookie": cookie, "Origin": server.url})
    assert own.status_code == 200, own.text


def test_logout_ends_the_session(server: ServerProcess) -> None:
    cookie = _login(server, TOKEN).headers["set-cookie"].split(";", 1)[0]
    assert httpx.get(server.url + EXPERIMENTS, headers={"Cookie": cookie}).status_code == 200
    out = httpx.post(f"{server.url}/logout", headers={"Cookie": cookie, "Origin": server.url})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert "max-age=0" in out.headers["set-cookie"].lower()
    assert httpx.get(server.url + EXPERIMENTS, headers={"Cookie": cookie}).status_code == 401


def test_cookie_expires_and_dies_with_the_token() -> None:
    sessions = Sessions("one")
    value = sessions.issue(now=1000.0)
    assert sessions.valid(value, now=1000.0 + MAX_AGE_SECONDS - 1)
    assert not sessions.valid(value, now=1000.0 + MAX_AGE_SECONDS + 1)
    assert not Sessions("two").valid(value, now=1000.0)
    assert not Sessions(None).valid(value, now=1000.0)
