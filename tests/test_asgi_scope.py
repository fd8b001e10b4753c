"""The ASGI HTTP scope: what the app is told of the request, and the response head it
sends reaching the client."""

import json

import pytest

from support import app_dir, python_block
from asgi_support import raw_request, header_values, start_raw_server


@pytest.fixture(scope="module")
def server(caddy_launcher):
    caddy = start_raw_server(caddy_launcher)
    yield caddy
    caddy.stop()


def test_the_http_scope_describes_the_request(server):
    target = "/raw/scope/caf%C3%A9/a%2Fb%20c?x=1&y=%20z&x=2"
    request = (
        f"PUT {target} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.http_port}\r\n"
        "X-Custom-Thing: Value With Case\r\n"
        "X-Multi: one\r\n"
        "X-Multi: two\r\n"
        "Content-Length: 5\r\n"
        "Connection: close\r\n"
        "\r\n"
        "hello"
    ).encode()
    status, _, body, client_port = raw_request(server.http_port, request)
    assert status == 200, body[:2000]
    scope = json.loads(body)

    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "PUT"
    assert scope["scheme"] == "http"
    assert scope["root_path"] == "/raw"
    assert scope["path"] == "/raw/scope/café/a/b c", scope["path"]
    assert scope["raw_path"] == {"bytes": "/raw/scope/caf%C3%A9/a%2Fb%20c"}, scope["raw_path"]
    assert scope["query_string"] == {"bytes": "x=1&y=%20z&x=2"}
    assert scope["types"]["path"] == "str"
    assert scope["types"]["root_path"] == "str"
    assert scope["types"]["raw_path"] == "bytes"
    assert scope["types"]["query_string"] == "bytes"

    assert scope["header_types"] == ["bytes,bytes"]
    assert scope["header_is_pair"] is True
    names = [n["bytes"] for n, _ in scope["headers"]]
    assert names == [n.lower() for n in names], names
    assert header_values(scope, "host") == [f"127.0.0.1:{server.http_port}"]
    assert header_values(scope, "x-custom-thing") == ["Value With Case"]
    assert header_values(scope, "x-multi") == ["one", "two"]
    assert header_values(scope, "content-length") == ["5"]

    assert list(scope["client"]) == ["127.0.0.1", client_port]
    assert list(scope["server"]) == ["127.0.0.1", server.http_port]
    assert scope["body"] == "hello"


def test_an_http_1_0_request_has_http_version_1_0(server):
    request = f"GET /raw/scope HTTP/1.0\r\nHost: 127.0.0.1:{server.http_port}\r\n\r\n".encode()
    status, _, body, _ = raw_request(server.http_port, request)
    assert status == 200, body[:2000]
    scope = json.loads(body)
    assert scope["http_version"] == "1.0"
    assert scope["path"] == "/raw/scope"
    assert scope["raw_path"] == {"bytes": "/raw/scope"}
    assert scope["query_string"] == {"bytes": ""}


def test_without_a_matcher_root_path_is_empty_and_path_the_whole_path(start_caddy):
    other = start_caddy(python_block(None, module_asgi="raw_app:app", working_dir=app_dir("asgi_raw")))
    scope = other.get_json("/scope/x/y")
    assert scope["root_path"] == ""
    assert scope["path"] == "/scope/x/y"


def test_response_status_and_repeated_headers_reach_the_client(server):
    response = server.get("/raw/headers")
    assert response.status_code == 201
    assert response.content == b"created"
    assert response.headers["x-vivarium-test"] == "one"
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
