"""ASGI apps that end without a complete response. (Exceptions before and after the
response started follow the same rule as WSGI's: test_errors.py.)"""

import httpx
import pytest

from asgi_support import start_raw_server


@pytest.fixture(scope="module")
def server(caddy_launcher):
    caddy = start_raw_server(caddy_launcher)
    yield caddy
    caddy.stop()


def test_an_app_returning_before_responding_gives_500(server):
    response = server.get("/raw/nothing")
    assert response.status_code == 500
    assert server.get_json("/raw/info")["pid"] == server.pid


def test_an_app_returning_with_its_response_unfinished_aborts_the_connection(server):
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        with server.client.stream("GET", "/raw/unfinished") as r:
            assert r.status_code == 200
            r.read()
    assert server.get_json("/raw/info")["pid"] == server.pid


def test_an_app_returning_after_response_start_alone_gives_500(server):
    """http.response.start without any body: the head is held until the first body
    part, so nothing went out and the server can still answer 500."""
    response = server.get("/raw/start_only")
    assert response.status_code == 500, (response.status_code, response.headers, response.text)
    assert server.get_json("/raw/info")["pid"] == server.pid
