"""What an app writes (print, sys.stderr, logging, wsgi.errors) becomes entries of
Caddy's log, one per line, carrying the line's text."""

import uuid

import pytest

from support import app_dir, is_caddy_log_entry, python_block


@pytest.fixture(scope="module")
def server(caddy_launcher):
    caddy = caddy_launcher.start(
        python_block("/c/*", "chatty:app", working_dir=app_dir("chatty"))
    )
    yield caddy
    caddy.stop()


def assert_logged_as_caddy_entry(server, text):
    assert server.wait_for_log(text), f"{text!r} never reached the log:\n{server.log_text()[-4000:]}"
    found = server.log_entries_containing(text)
    assert any(is_caddy_log_entry(line, entry) for line, entry in found), (
        f"{text!r} is in the output but not as an entry of Caddy's log: {found}"
    )


def test_output_at_import_time_is_logged(server):
    assert_logged_as_caddy_entry(server, "vivarium-test chatty imported")


@pytest.mark.parametrize(
    "route, prefix",
    [
        ("/c/print", "vivarium-test print "),
        ("/c/stderr", "vivarium-test stderr "),
        ("/c/logging", "vivarium-test logging "),
        ("/c/wsgi_errors", "vivarium-test wsgi.errors "),
    ],
    ids=["print", "sys.stderr", "logging", "wsgi.errors"],
)
def test_app_output_is_logged(server, route, prefix):
    token = uuid.uuid4().hex
    response = server.get(route, params={"token": token})
    assert response.status_code == 200
    assert_logged_as_caddy_entry(server, prefix + token)


def test_each_printed_line_is_its_own_entry(server):
    token = uuid.uuid4().hex
    response = server.get("/c/print", params={"token": token})
    assert response.status_code == 200
    text = "vivarium-test print " + token
    assert server.wait_for_log(text)
    found = server.log_entries_containing(text)
    assert len(found) == 1, found
    line, entry = found[0]
    if entry is not None:  # JSON log: some field carries exactly the line, newline stripped
        assert text in [v for v in entry.values() if isinstance(v, str)], entry
