"""ASGI lifespan: startup runs before traffic and its state reaches every request; a
failed startup refuses the config with the app's message; shutdown runs when a reload
replaces the app and when Caddy exits."""

import uuid

from support import app_dir, python_block, wait_until

LIFESPAN_APP = app_dir("asgi_lifespan")
FAIL_MESSAGE = "vivarium-test: the database is unreachable"
FAIL_EXCEPTION = "vivarium-test: startup exploded"


def block(matcher="/life/*", attribute="app", lifespan="on", **options):
    return python_block(
        matcher, module_asgi=f"lifespan_app:{attribute}", lifespan=lifespan,
        working_dir=LIFESPAN_APP, **options,
    )


def test_startup_runs_before_traffic_and_its_state_reaches_requests(start_caddy):
    server = start_caddy(block())
    # the very first request: startup (which takes 0.3 s) must be over already
    first = server.get_json("/life/state")
    info = server.get_json("/life/info")
    assert info["startup"] is True, info
    assert info["lifespan_calls"] == 1, info
    assert first["has_state"] is True, first
    assert first["state"]["greeting"] == "hello from startup", first
    assert first["state"]["instance"] == info["instance"], (first, info)
    # each request gets its own copy: what one request sets is not seen by the next
    second = server.get_json("/life/state")
    assert "mutated_by_request" not in second["state"], second
    assert second["state"]["greeting"] == "hello from startup"
    assert server.wait_for_log(f"vivarium-lifespan-startup {info['instance']}")


def test_without_lifespan_on_the_lifespan_scope_is_never_run(start_caddy):
    server = start_caddy(
        "\n".join(
            [
                block("/off/*", lifespan="off"),
                python_block("/default/*", module_asgi="lifespan_app:app", working_dir=LIFESPAN_APP),
            ]
        )
    )
    for prefix in ("/off", "/default"):
        info = server.get_json(f"{prefix}/info")
        assert info["lifespan_calls"] == 0, (prefix, info)
        assert info["startup"] is False, (prefix, info)
    # two apps, two interpreters, one process
    ids = {server.get_json(f"{p}/info")["interp_id"] for p in ("/off", "/default")}
    assert len(ids) == 2, ids


def test_lifespan_startup_failed_refuses_the_config_with_the_apps_message(caddy_must_refuse):
    failure = caddy_must_refuse(block(attribute="fails_with_message"))
    assert failure.returncode != 0
    assert FAIL_MESSAGE in failure.output, failure.output
    assert "lifespan_app:fails_with_message" in failure.output, failure.output


def test_an_exception_in_lifespan_startup_refuses_the_config_with_its_text(caddy_must_refuse):
    failure = caddy_must_refuse(block(attribute="fails_with_exception"))
    assert failure.returncode != 0
    assert FAIL_EXCEPTION in failure.output, failure.output
    assert "RuntimeError" in failure.output, failure.output
    assert "lifespan_app:fails_with_exception" in failure.output, failure.output


def arm(server, marker):
    armed = server.get_json("/life/arm", params={"marker": str(marker)})
    assert armed["armed"] == str(marker)
    return armed["instance"]


def test_shutdown_runs_for_the_old_instance_on_reload(start_caddy, tmp_path):
    server = start_caddy(block(threads=2))
    marker = tmp_path / f"shutdown-{uuid.uuid4().hex}"
    old = arm(server, marker)
    assert not marker.exists()

    server.reload(block(threads=3))  # a different config: the app is replaced

    assert wait_until(marker.exists, timeout=15), (
        f"the old instance's lifespan shutdown did not run on reload:\n{server.log_text()[-4000:]}"
    )
    assert marker.read_text() == old
    assert server.wait_for_log(f"vivarium-lifespan-shutdown {old}")
    new = server.get_json("/life/info")
    assert new["instance"] != old
    assert new["startup"] is True, new
    assert server.get_json("/life/state")["state"]["instance"] == new["instance"]
    # the new instance was not shut down by the reload
    assert f"vivarium-lifespan-shutdown {new['instance']}" not in server.log_text()


def test_shutdown_runs_when_caddy_exits(caddy_launcher, tmp_path):
    server = caddy_launcher.start(block())
    marker = tmp_path / f"shutdown-{uuid.uuid4().hex}"
    instance = arm(server, marker)
    code = server.stop()
    log = server.log_text()
    assert code == 0, f"exit code {code} after SIGTERM:\n{log[-4000:]}"
    assert marker.exists(), f"lifespan shutdown did not run on exit:\n{log[-4000:]}"
    assert marker.read_text() == instance
    assert f"vivarium-lifespan-shutdown {instance}" in log


def test_a_reload_whose_startup_fails_is_refused_and_the_old_app_serves_on(start_caddy, tmp_path):
    server = start_caddy(block())
    marker = tmp_path / f"shutdown-{uuid.uuid4().hex}"
    old = arm(server, marker)

    done = server.reload(
        block() + "\n" + block("/bad/*", attribute="fails_with_message"), check=False
    )
    assert done.returncode != 0
    assert FAIL_MESSAGE in done.stdout + done.stderr, done.stdout + done.stderr

    info = server.get_json("/life/info")
    assert info["instance"] == old, "the refused config replaced the running app"
    assert server.get_json("/life/state")["state"]["instance"] == old
    assert not marker.exists(), "the running app was shut down by a refused reload"
    assert server.alive()
