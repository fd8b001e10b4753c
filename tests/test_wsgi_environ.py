"""PEP 3333: what the server puts in the environ and how it treats start_response,
write(), the response iterable, close() and wsgi.file_wrapper."""

import hashlib
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from support import app_dir, python_block


@pytest.fixture(scope="module")
def server(caddy_launcher):
    spec = app_dir("wsgi_spec")
    body = "\n".join(
        [
            python_block("/api/*", "spec_app:app", working_dir=spec),
            python_block("/v/*", "validated:app", working_dir=spec),
        ]
    )
    caddy = caddy_launcher.start(body)
    yield caddy
    caddy.stop()


def environ_of(server, method="GET", path="/api/environ", **kwargs):
    response = server.client.request(method, path, **kwargs)
    assert response.status_code == 200, f"{response.status_code}: {response.text}\n{server.log_text()[-3000:]}"
    return response.json()["values"]


def wait_until_closed(server, route, token, timeout=15):
    """Polls the app until it reports close() for token (a bounded wait, not a timing check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.get_json(route, params={"token": token})["closed"]:
            return True
        time.sleep(0.1)
    return False


# ------------------------------------------------------------------ the environ


def test_script_name_is_the_prefix_handle_path_stripped_and_path_info_the_rest(server):
    env = environ_of(server, path="/api/environ/deeper/path")
    assert env["SCRIPT_NAME"] == "/api"
    assert env["PATH_INFO"] == "/environ/deeper/path"


def test_without_a_matcher_script_name_is_empty_and_path_info_the_whole_path(start_caddy):
    server = start_caddy(python_block(None, "spec_app:app", working_dir=app_dir("wsgi_spec")))
    env = environ_of(server, path="/environ/x/y")
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/environ/x/y"


def test_path_info_is_url_decoded(server):
    env = environ_of(server, path="/api/environ/a%20b")
    assert env["PATH_INFO"] == "/environ/a b"


def test_non_ascii_path_info_is_the_utf8_bytes_decoded_as_latin1(server):
    """PEP 3333: environ strings carry the request's bytes decoded as ISO-8859-1; an app
    recovers the text with .encode("latin-1").decode("utf-8")."""
    env = environ_of(server, path="/api/environ/caf%C3%A9")
    assert env["PATH_INFO"] == "/environ/caf\u00c3\u00a9"
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/environ/café"


def test_query_string_is_passed_undecoded(server):
    env = environ_of(server, path="/api/environ?q=x%20y&a=1&a=2")
    assert env["QUERY_STRING"] == "q=x%20y&a=1&a=2"


def test_request_headers_become_http_variables_and_repeats_are_joined(server):
    env = environ_of(
        server,
        headers=[
            ("X-Custom-Thing", "hello"),
            ("X-Repeat", "one"),
            ("X-Repeat", "two"),
            ("User-Agent", "vivarium-tests"),
        ],
    )
    assert env["HTTP_X_CUSTOM_THING"] == "hello"
    assert env["HTTP_X_REPEAT"] == "one, two"
    assert env["HTTP_USER_AGENT"] == "vivarium-tests"
    assert env["HTTP_HOST"] == f"127.0.0.1:{server.http_port}"


def test_every_header_name_arrives_however_many_the_clients_invent(server):
    # The interpreter keeps the environ keys it has seen, up to a bound; names
    # past it, and names alike but for one letter, must still come through.
    for batch in range(3):
        headers = [(f"X-Name-{batch}-{i:02d}", f"v{batch}.{i}") for i in range(60)]
        env = environ_of(server, headers=headers)
        for i in range(60):
            assert env[f"HTTP_X_NAME_{batch}_{i:02d}"] == f"v{batch}.{i}"
        assert env["REQUEST_METHOD"] == "GET"
        assert env["HTTP_HOST"] == f"127.0.0.1:{server.http_port}"


def test_connection_variables(server):
    with server.client.stream("GET", "/api/environ") as response:
        client_host, client_port = response.extensions["network_stream"].get_extra_info(
            "client_addr"
        )
        response.read()
    assert response.status_code == 200, response.text
    env = response.json()["values"]
    assert env["REQUEST_METHOD"] == "GET"
    assert env["REMOTE_ADDR"] == "127.0.0.1" == client_host
    assert env["REMOTE_PORT"] == str(client_port)
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.http_port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_wsgi_variables(server):
    described = server.get_json("/api/environ")
    env = described["values"]
    assert described["environ_type"] == "dict"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is True
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input"] == ["__iter__", "read", "readline", "readlines"]
    assert env["wsgi.errors"] == ["flush", "write", "writelines"]
    assert env["wsgi.file_wrapper"] is True
    not_str = {k: t for k, t in described["types"].items() if "." not in k and t != "str"}
    assert not_str == {}, f"CGI variables must be native strings: {not_str}"


def test_content_length_and_content_type_of_a_post(server):
    env = environ_of(
        server, "POST", content=b"hello", headers={"Content-Type": "text/plain"}
    )
    assert env["REQUEST_METHOD"] == "POST"
    assert env["CONTENT_LENGTH"] == "5"
    assert env["CONTENT_TYPE"] == "text/plain"
    assert "HTTP_CONTENT_LENGTH" not in env
    assert "HTTP_CONTENT_TYPE" not in env


# ------------------------------------------------------------------ wsgi.input

BODY = b"line1\nline2\n\nlast line without newline"
LINES = ["line1\n", "line2\n", "\n", "last line without newline"]


@pytest.mark.parametrize(
    "route, expected",
    [
        ("/api/input/read", [BODY.decode()]),
        ("/api/input/read_chunks?n=4", [BODY[i : i + 4].decode() for i in range(0, len(BODY), 4)]),
        ("/api/input/readline", LINES),
        ("/api/input/iterate", LINES),
        ("/api/input/readlines", LINES),
    ],
)
def test_wsgi_input_reads_the_request_body(server, route, expected):
    response = server.post(route, content=BODY)
    assert response.status_code == 200, response.text
    assert response.json() == {"parts": expected, "types": ["bytes"]}


@pytest.mark.parametrize("route", ["/api/input/read_chunks?n=7", "/api/input/iterate"])
def test_wsgi_input_of_a_chunked_request_ends_at_the_end_of_the_body(server, route):
    pieces = [b"alpha\nbe", b"ta\n", b"gamma"]

    def generate():
        yield from pieces

    response = server.post(route, content=generate())
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 200, response.text
    assert "".join(response.json()["parts"]).encode() == b"".join(pieces)


# ------------------------------------------------------------------ the response side


def test_write_callable_output_comes_before_the_iterable(server):
    response = server.get("/api/write")
    assert response.status_code == 200
    assert response.content == b"written-1;written-2;returned-3"


def test_a_small_body_without_content_length_is_sent_with_one(server):
    response = server.get("/api/plain")
    assert response.status_code == 200
    assert response.content == b"no length declared"
    assert response.headers.get("content-length") == "18"
    assert "transfer-encoding" not in response.headers


def test_sized_responses_follow_each_other_on_one_kept_alive_connection(server):
    """A response that fills its Content-Length is flushed by the worker thread
    itself while no request queues; the next request on the same connection must
    still be read and answered."""
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        client_ports = set()
        for i in range(30):
            response = client.get(f"/api/environ/{i}")
            assert response.status_code == 200
            env = response.json()["values"]
            assert env["PATH_INFO"] == f"/environ/{i}"
            assert response.headers["content-length"] == str(len(response.content))
            client_ports.add(env["REMOTE_PORT"])
        head = client.head("/api/environ/0")
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) > 0
        assert client.get("/api/plain").content == b"no length declared"
    assert len(client_ports) == 1, f"the connection was not kept alive: client ports {client_ports}"


def test_sized_responses_stay_whole_and_in_order_while_requests_queue(start_caddy):
    """With one worker thread and eight clients, requests queue; the handler, not
    the worker, then writes each response."""
    server = start_caddy(
        python_block("/api/*", "spec_app:app", working_dir=app_dir("wsgi_spec"), threads=1)
    )

    def client_run(c):
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            ports = set()
            for i in range(40):
                response = client.get(f"/api/environ/{c}/{i}")
                assert response.status_code == 200, response.text
                assert response.headers["content-length"] == str(len(response.content))
                env = response.json()["values"]
                assert env["PATH_INFO"] == f"/environ/{c}/{i}"
                ports.add(env["REMOTE_PORT"])
            return ports

    with ThreadPoolExecutor(8) as pool:
        for ports in pool.map(client_run, range(8)):
            assert len(ports) == 1, f"a connection was not kept alive: client ports {ports}"


def test_start_response_with_exc_info_replaces_status_and_headers(server):
    response = server.get("/api/exc_info")
    assert response.status_code == 202, response.text
    assert response.headers.get("x-replaced") == "yes"
    assert "x-first" not in response.headers
    assert response.content == b"replaced"


def test_second_start_response_without_exc_info_is_an_error(server):
    response = server.get("/api/double_start")
    assert response.status_code == 200
    assert response.content.startswith(b"raised "), response.content


def test_repeated_response_headers_are_kept_apart(server):
    response = server.get("/api/headers")
    assert response.status_code == 200
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert response.headers["x-app"] == "spec"


# ------------------------------------------------------------------ close()


def test_close_is_called_after_a_complete_response(server):
    token = uuid.uuid4().hex
    response = server.get("/api/closing", params={"token": token})
    assert response.content == b"one;two;three"
    assert wait_until_closed(server, "/api/closed", token)


def test_close_is_called_when_the_client_goes_away_mid_stream(server):
    token = uuid.uuid4().hex
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        with client.stream("GET", "/api/closing_big", params={"token": token}) as response:
            assert response.status_code == 200
            first = next(response.iter_raw())
            assert first
    # the connection is gone with ~64 GiB left unread; the server must stop and close()
    assert wait_until_closed(server, "/api/closed", token), (
        "close() not called after the client disconnected"
    )


def test_close_is_called_when_the_iterable_raises(server):
    token = uuid.uuid4().hex
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        with server.client.stream("GET", "/api/closing_raise", params={"token": token}) as r:
            r.read()
    assert wait_until_closed(server, "/api/closed", token)


# ------------------------------------------------------------------ wsgi.file_wrapper


def test_file_wrapper_serves_a_file_and_closes_it(server, tmp_path):
    data = os.urandom(300_000)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    token = uuid.uuid4().hex
    response = server.get("/api/file", params={"path": str(path), "token": token})
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == hashlib.sha256(data).hexdigest()
    assert wait_until_closed(server, "/api/file_closed", token)


def test_file_wrapper_accepts_a_file_like_object_without_fileno(server):
    response = server.get("/api/filelike", params={"size": 20000})
    assert response.status_code == 200
    assert response.content == bytes(i % 251 for i in range(20000))


# ------------------------------------------------------------------ wsgiref.validate


@pytest.mark.parametrize(
    "method, path, kwargs, expected",
    [
        ("GET", "/v/hello", {}, b"hello from a validated app"),
        ("POST", "/v/echo", {"content": b"echo \x00\xff body" * 1000}, b"echo \x00\xff body" * 1000),
        ("GET", "/v/stream", {}, b"chunk-0;chunk-1;chunk-2;chunk-3;chunk-4;"),
    ],
    ids=["get", "post-with-body", "streamed-generator"],
)
def test_wsgiref_validator_finds_no_violation(server, method, path, kwargs, expected):
    response = server.client.request(method, path, **kwargs)
    assert response.status_code == 200, (
        f"validator rejected the server ({response.status_code}):\n{server.log_text()[-4000:]}"
    )
    assert response.content == expected
    assert server.get_json("/v/problems") == []
