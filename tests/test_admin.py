"""The admin API (admin.api.python) and app names: GET /python/apps shows each app's
interpreters, their threads and the requests they run; POST /python/apps/<name>/restart
replaces one app's interpreters under load without failing a request and without
touching another app; names are derived from the site and matcher, or given, and unique."""

import re
import shutil
import threading
import time

import httpx
import pytest

from support import admin_apps, admin_restart, app_dir, python_block, wait_until

KINDS = ["wsgi", "asgi"]


def block(kind, matcher, name=None, workdir=None, **options):
    """A block serving tests/apps/metrics_app (or a copy of it) as `kind`."""
    module = {f"module_{kind}": f"metrics_app:{kind}"}
    return python_block(matcher, **module, working_dir=workdir or app_dir("metrics_app"), name=name, **options)


def interpreters(app):
    """The interpreters of an app's serving instance, by id."""
    serving = [inst for inst in app["instances"] if inst["state"] == "serving"]
    assert len(serving) == 1, app
    return {interp["id"]: interp for interp in serving[0]["interpreters"]}


@pytest.mark.parametrize("kind", KINDS)
def test_apps_are_listed_with_interpreters_threads_and_running_requests(start_caddy, kind):
    server = start_caddy("\n".join([
        block(kind, "/alpha/*", "alpha", interpreters=2, threads=2),
        block("wsgi", "/beta/*", "beta"),
    ]))
    for path in ["/alpha/ok", "/alpha/ok", "/alpha/status?code=404"]:
        server.get(path)
    result = {}
    sleeper = threading.Thread(
        target=lambda: result.update(r=httpx.get(f"{server.base_url}/alpha/sleep?s=3", timeout=60)), daemon=True)
    sleeper.start()

    def running_request():
        for interp in interpreters(admin_apps(server)["alpha"]).values():
            for thread in interp["threads"]:
                for req in ([thread["request"]] if "request" in thread else thread.get("requests", [])):
                    if req["path"] == "/alpha/sleep":
                        return interp, thread, req
        return None

    found = wait_until(running_request, timeout=30)
    assert found, admin_apps(server)["alpha"]
    running_in, thread, req = found
    assert req["method"] == "GET" and req["seconds"] >= 0
    assert thread["state"] == ("running" if kind == "wsgi" else "event_loop")

    apps = admin_apps(server)
    assert set(apps) == {"alpha", "beta"}
    alpha = apps["alpha"]
    assert (alpha["kind"], alpha["module"], alpha["isolation"]) == (kind, f"metrics_app:{kind}", "interpreter")
    assert alpha["counters"]["requests"] == {"none": 0, "1xx": 0, "2xx": 2, "3xx": 0, "4xx": 1, "5xx": 0}
    assert alpha["counters"]["restarts"] == {"admin": 0}
    ids = interpreters(alpha)
    assert len(ids) == 2
    for interp in ids.values():
        assert interp["state"] == "serving"
        assert interp["arena_bytes"] > 0
        if kind == "wsgi":
            assert len(interp["threads"]) == 2
            assert 1 <= interp["concurrency_limit"] <= 2
            assert {t["state"] for t in interp["threads"]} <= {"idle", "running", "waiting", "assigned"}
        else:
            assert [t["state"] for t in interp["threads"]] == ["event_loop"]
    assert sum(i["requests"] for i in ids.values()) == 4  # three done, one running

    sleeper.join(60)
    assert result["r"].status_code == 200
    # The interpreter the app says it ran in is the one the API showed running it.
    assert result["r"].json()["interp_id"] == running_in["id"]
    beta = interpreters(admin_apps(server)["beta"])
    assert len(beta) == 1 and not set(beta) & set(ids)


class Load:
    """A bounded loop of requests from a few threads, recording every outcome."""

    def __init__(self, base_url, path, threads=4, limit=20000):
        self.base_url, self.path, self.limit = base_url, path, limit
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.sent = 0
        self.failures: list[str] = []
        self.interp_ids: list[int] = []
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        with httpx.Client(base_url=self.base_url, timeout=60) as client:
            while not self.stop.is_set():
                with self.lock:
                    if self.sent >= self.limit:
                        return
                    self.sent += 1
                try:
                    response = client.get(self.path)
                    ok = response.status_code == 200
                    outcome = response.json()["interp_id"] if ok else f"{response.status_code}: {response.text[:200]}"
                except Exception as exc:  # a refused or cut connection is a failure too
                    ok, outcome = False, repr(exc)
                with self.lock:
                    (self.interp_ids if ok else self.failures).append(outcome)

    def __enter__(self):
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(120)
        self.seconds = time.monotonic() - self.started


@pytest.mark.parametrize("kind", KINDS)
def test_a_restart_under_load_fails_no_request_and_leaves_other_apps_alone(start_caddy, measurement, kind):
    server = start_caddy("\n".join([
        block(kind, "/target/*", "target", interpreters=2),
        block("wsgi", "/other/*", "other", interpreters=2),
    ]))
    before = admin_apps(server)
    target_before, other_before = set(interpreters(before["target"])), set(interpreters(before["other"]))
    imported_before = server.get_json("/target/ok")["imported_at"]

    slow = {}
    with Load(server.base_url, "/target/ok") as target_load, Load(server.base_url, "/other/ok", threads=1) as other_load:
        assert wait_until(lambda: len(target_load.interp_ids) >= 50, timeout=60)
        # A request still running when the restart begins finishes on the old interpreters.
        slow_thread = threading.Thread(
            target=lambda: slow.update(r=httpx.get(f"{server.base_url}/target/sleep?s=2", timeout=60)), daemon=True)
        slow_thread.start()
        assert wait_until(lambda: admin_apps(server)["target"]["instances"][0]["in_flight"] >= 1, timeout=30)
        response = admin_restart(server, "target")
        assert response.status_code == 200, response.text
        sent_at_restart = target_load.sent
        assert wait_until(lambda: target_load.sent >= sent_at_restart + 50, timeout=60)
        slow_thread.join(60)

    restart = response.json()
    measurement(
        f"restart under load ({kind}): {target_load.sent} requests to the restarted app in "
        f"{target_load.seconds:.1f} s, {len(target_load.failures)} failed; {other_load.sent} to the other app, "
        f"{len(other_load.failures)} failed; new interpreters started in {restart['start_seconds']:.2f} s, "
        f"old ones drained in {restart['drain_seconds']:.2f} s"
    )
    assert target_load.failures == [] and other_load.failures == []
    assert slow["r"].status_code == 200 and slow["r"].json()["interp_id"] in target_before

    assert set(restart["old_interpreters"]) == target_before
    target_after = set(restart["new_interpreters"])
    assert len(target_after) == 2 and not target_after & target_before
    # The load saw the old interpreters, then the new ones; the other app kept its own.
    assert set(target_load.interp_ids) <= target_before | target_after
    assert set(target_load.interp_ids) & target_before and set(target_load.interp_ids) & target_after
    assert set(target_load.interp_ids[-20:]) <= target_after
    assert set(other_load.interp_ids) <= other_before

    after = admin_apps(server)
    assert set(interpreters(after["target"])) == target_after
    assert set(interpreters(after["other"])) == other_before
    assert len(after["target"]["instances"]) == 1  # the old instance has ended
    assert after["target"]["counters"]["restarts"] == {"admin": 1}
    assert after["other"]["counters"]["restarts"] == {"admin": 0}
    # The app's code was imported afresh.
    assert server.get_json("/target/ok")["imported_at"] > imported_before


def test_an_app_in_the_main_interpreter_restarts_in_place_under_load(start_caddy):
    server = start_caddy("\n".join([
        block("wsgi", "/main/*", "main-app", isolation="main"),
        block("asgi", "/other/*", "other"),
    ]))
    other_before = set(interpreters(admin_apps(server)["other"]))
    imported_before = server.get_json("/main/ok")["imported_at"]
    with Load(server.base_url, "/main/ok", threads=2) as load:
        assert wait_until(lambda: len(load.interp_ids) >= 20, timeout=60)
        response = admin_restart(server, "main-app")
        assert response.status_code == 200, response.text
        sent_at_restart = load.sent
        assert wait_until(lambda: load.sent >= sent_at_restart + 20, timeout=60)
    assert load.failures == []
    assert set(load.interp_ids) == {0}
    assert (response.json()["old_interpreters"], response.json()["new_interpreters"]) == ([0], [0])
    assert server.get_json("/main/ok")["imported_at"] > imported_before
    assert set(interpreters(admin_apps(server)["other"])) == other_before


def test_a_restart_that_cannot_start_keeps_the_old_interpreters_serving(start_caddy, tmp_path):
    workdir = tmp_path / "app"
    shutil.copytree(app_dir("metrics_app"), workdir)
    server = start_caddy(block("wsgi", "/m/*", "m", workdir=workdir))
    ids = set(interpreters(admin_apps(server)["m"]))
    source = (workdir / "metrics_app.py").read_text()

    (workdir / "metrics_app.py").write_text("raise RuntimeError('broken on purpose')\n" + source)
    response = admin_restart(server, "m")
    assert response.status_code == 500
    assert "broken on purpose" in response.json()["error"] and "old ones keep serving" in response.json()["error"]
    assert server.get_json("/m/ok")["interp_id"] in ids
    assert set(interpreters(admin_apps(server)["m"])) == ids

    (workdir / "metrics_app.py").write_text(source)
    assert admin_restart(server, "m").status_code == 200
    assert server.get_json("/m/ok")["interp_id"] not in ids


def test_the_restart_endpoint_refuses_unknown_apps_and_other_methods(start_caddy):
    server = start_caddy(block("wsgi", "/m/*", "m"))
    admin = f"http://{server.admin_address}"
    missing = httpx.post(f"{admin}/python/apps/nope/restart", timeout=30)
    assert missing.status_code == 404 and "no python app named \"nope\"" in missing.json()["error"]
    assert httpx.get(f"{admin}/python/apps/m/restart", timeout=30).status_code == 405
    assert httpx.post(f"{admin}/python/apps/m/reboot", timeout=30).status_code == 404
    assert httpx.post(f"{admin}/python/apps", timeout=30).status_code == 405


def test_names_default_to_site_and_matcher_and_tag_the_log(start_caddy):
    server = start_caddy("\n".join([
        block("wsgi", "/api/v1/*", None),
        block("asgi", "@chat", None),
        "@chat path /chat/*",
        block("wsgi", "/named/*", "my-app_2.0"),
    ]))
    site = f"127.0.0.1-{server.http_port}"
    assert set(admin_apps(server)) == {f"{site}-api-v1", f"{site}-chat", "my-app_2.0"}
    started = [entry for _, entry in server.log_entries_containing("interpreter started") if entry]
    assert {entry["app"] for entry in started} == {f"{site}-api-v1", f"{site}-chat", "my-app_2.0"}
    assert {entry["module"] for entry in started} == {"metrics_app:wsgi", "metrics_app:asgi"}


def test_duplicate_and_invalid_names_are_refused(caddy_must_refuse):
    twice = caddy_must_refuse("\n".join([block("wsgi", "/a/*", "same"), block("wsgi", "/b/*", "same")]))
    assert twice.returncode != 0
    # Caddy's log is JSON: the quotes around the name come escaped.
    assert 'two python apps in this config are named \\"same\\"' in twice.output

    # Two blocks under `handle` have no matcher of their own: the same derived name.
    # (Under `handle_path` a block is named after its path.)
    derived = caddy_must_refuse("\n".join([
        "handle /a/* {", block("wsgi", None), "}",
        "handle /b/* {", block("wsgi", None), "}",
    ]))
    assert derived.returncode != 0
    assert "names must be unique" in derived.output and "own `name`" in derived.output

    invalid = caddy_must_refuse(block("wsgi", "/a/*", "a/b"))
    assert invalid.returncode != 0
    assert 'name \\"a/b\\" must be' in invalid.output
    assert re.search(rf"Caddyfile:{invalid.line_of('name a/b')}\b", invalid.output), invalid.output
