"""`start_timeout D`: an app's import and its ASGI lifespan startup are bounded. Past
the bound the config is refused, naming the app and where its code was; code that
runs Python is interrupted (StartTimeout raised in it) and its interpreter ended, so
nothing half-started is left; an import that does not come back to Python (a sleep,
C code) is reported as such, and its interpreter ended once it does. The running
config, and the other app, go on serving."""

import time

import pytest

from controls_support import block, info
from support import wait_until

BOUND = "2s"
HANG = "hang_import:app"


def healthy():
    return block("/ok/*", "wsgi")


def hanging(*lines):
    return block("/hang/*", "wsgi", *lines, module=HANG, start_timeout=BOUND)


def reload_refused(server, body):
    done = server.reload(body, force=True, check=False)
    assert done.returncode != 0, f"the reload was accepted:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture
def server(start_caddy):
    return start_caddy(healthy())


def test_an_import_that_spins_is_interrupted_and_refused(server):
    before = info(server, "/ok")
    started = time.monotonic()

    output = reload_refused(server, "\n".join([healthy(), hanging()]))

    took = time.monotonic() - started
    assert HANG in output, output
    assert f"did not start within start_timeout {BOUND}" in output, output
    assert "StartTimeout" in output and "spin_at_import" in output, output
    assert took < 60, f"the refusal took {took:.1f} s"
    # the interrupted import's interpreter is ended; the running app serves on
    assert wait_until(lambda: info(server, "/ok")["interpreters"] == before["interpreters"]), info(server, "/ok")
    assert info(server, "/ok")["interpreter"] == before["interpreter"]


def test_an_import_that_does_not_return_to_python_is_refused_and_ended_when_it_returns(server):
    before = info(server, "/ok")

    output = reload_refused(server, "\n".join([healthy(), hanging("env HANG sleep", "env HANG_SECONDS 12")]))

    assert HANG in output, output
    assert "does not return to Python" in output, output
    assert "time.sleep" in output, output
    assert info(server, "/ok")["interpreter"] == before["interpreter"]
    # once its sleep is over, the interpreter is ended: nothing stays behind
    assert wait_until(lambda: info(server, "/ok")["interpreters"] == before["interpreters"], timeout=40), (
        info(server, "/ok"), server.log_text()[-3000:])
    assert server.wait_for_log("ran past start_timeout has returned")


@pytest.mark.parametrize("how", ["spin", "wait"])
def test_a_lifespan_startup_that_never_completes_is_refused(server, how):
    before = info(server, "/ok")
    body = "\n".join([healthy(), block("/hang/*", "asgi", f"env CONTROLS_LIFESPAN {how}", start_timeout=BOUND)])

    output = reload_refused(server, body)

    assert "controls_app:asgi" in output, output
    assert f"did not start within start_timeout {BOUND}" in output, output
    assert ("StartTimeout" in output and "spin_forever" in output) if how == "spin" else "cancelled" in output, output
    assert wait_until(lambda: info(server, "/ok")["interpreters"] == before["interpreters"]), info(server, "/ok")


def test_caddy_run_refuses_a_config_whose_app_does_not_start_in_time(caddy_must_refuse):
    failure = caddy_must_refuse("\n".join([healthy(), hanging()]))
    assert failure.returncode != 0
    assert HANG in failure.output and "start_timeout" in failure.output, failure.output
