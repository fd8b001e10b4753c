"""Errors in apps: at run time they fail one request (visibly in Caddy's log) and
nothing else; at start-up they stop `caddy run` with the app and the Python error."""

import uuid
from dataclasses import dataclass

import httpx
import pytest

from support import app_dir, python_block


@pytest.fixture(scope="module")
def server(caddy_launcher):
    body = "\n".join(
        [
            python_block("/err/*", "errors_app:app", working_dir=app_dir("errors")),
            python_block("/raw/*", module_asgi="raw_app:app", working_dir=app_dir("asgi_raw")),
            python_block("/other/*", "probe:app", working_dir=app_dir("probe")),
        ]
    )
    caddy = caddy_launcher.start(body)
    yield caddy
    caddy.stop()


@dataclass(frozen=True)
class Failing:
    """An app's routes that raise, and what it raises with."""

    before: str  # raises before the response starts
    after: str  # raises after the head and a first part went out
    before_message: str
    after_message: str
    before_function: str
    after_function: str


FAILING = {
    "wsgi": Failing("/err/raise", "/err/raise_after_headers", "vivarium-test-error before headers",
                    "vivarium-test-error after headers", "explode_before_headers", "_late_failure"),
    "asgi": Failing("/raw/raise", "/raw/raise_after", "vivarium-asgi-error before start",
                    "vivarium-asgi-error after start", "explode_before_start", "explode_after_start"),
}
kinds = pytest.mark.parametrize("kind", FAILING)


def assert_all_apps_serve(server):
    assert server.get("/err/fine").content == b"fine"
    assert server.get_json("/raw/info")["pid"] == server.pid
    assert server.get_json("/other/info")["pid"] == server.pid
    assert server.alive()


# ------------------------------------------------------------------ at run time


@kinds
def test_an_exception_before_the_response_starts_gives_500_and_a_logged_traceback(server, kind):
    app = FAILING[kind]
    token = uuid.uuid4().hex
    response = server.get(app.before, params={"token": token})
    assert response.status_code == 500
    assert token not in response.text, "the traceback must not be sent to the client"

    message = f"{app.before_message} {token}"
    assert server.wait_for_log(message), f"{message!r} not in the log:\n{server.log_text()[-4000:]}"
    log = server.log_text()
    assert "Traceback (most recent call last)" in log
    assert f"in {app.before_function}" in log, "the traceback lacks the raising function"
    assert "ValueError" in log
    assert_all_apps_serve(server)


@kinds
def test_an_exception_after_the_response_started_aborts_the_connection(server, kind):
    app = FAILING[kind]
    token = uuid.uuid4().hex
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        with server.client.stream("GET", app.after, params={"token": token}) as r:
            assert r.status_code == 200  # the head was already on the wire
            r.read()  # must not end as if the body were complete
    message = f"{app.after_message} {token}"
    assert server.wait_for_log(message), f"{message!r} not in the log:\n{server.log_text()[-4000:]}"
    assert f"in {app.after_function}" in server.log_text()
    assert_all_apps_serve(server)


@kinds
def test_many_failing_requests_leave_the_process_serving(server, kind):
    for _ in range(20):
        assert server.get(FAILING[kind].before, params={"token": "repeat"}).status_code == 500
    assert_all_apps_serve(server)


# ------------------------------------------------------------------ at start-up


def test_a_missing_module_is_refused_with_the_module_named(caddy_must_refuse):
    failure = caddy_must_refuse(
        python_block("/*", "vivarium_no_such_module:app", working_dir=app_dir("probe"))
    )
    assert failure.returncode != 0
    assert "vivarium_no_such_module:app" in failure.output, failure.output
    assert "No module named 'vivarium_no_such_module'" in failure.output, failure.output


def test_a_missing_dependency_of_the_app_is_refused_with_pythons_error(caddy_must_refuse):
    failure = caddy_must_refuse(python_block("/*", "needs_dep:app", working_dir=app_dir("broken")))
    assert failure.returncode != 0
    assert "needs_dep:app" in failure.output, failure.output
    assert "No module named 'vivarium_missing_dependency'" in failure.output, failure.output


def test_a_missing_attribute_is_refused_with_the_attribute_named(caddy_must_refuse):
    failure = caddy_must_refuse(
        python_block("/*", "noapp:app", working_dir=app_dir("broken"))
    )
    assert failure.returncode != 0
    assert "noapp:app" in failure.output, failure.output
    assert "has no attribute 'app'" in failure.output or "AttributeError" in failure.output, (
        failure.output
    )


def test_an_exception_at_import_time_is_refused_with_its_text(caddy_must_refuse):
    failure = caddy_must_refuse(python_block("/*", "boom:app", working_dir=app_dir("broken")))
    assert failure.returncode != 0
    assert "boom:app" in failure.output, failure.output
    assert "RuntimeError" in failure.output, failure.output
    assert "vivarium-test: boom at import time" in failure.output, failure.output


def test_one_broken_app_stops_the_whole_config(caddy_must_refuse):
    failure = caddy_must_refuse(
        "\n".join(
            [
                python_block("/good/*", "probe:app", working_dir=app_dir("probe")),
                python_block("/bad/*", "boom:app", working_dir=app_dir("broken")),
            ]
        )
    )
    assert failure.returncode != 0
    assert "vivarium-test: boom at import time" in failure.output, failure.output
