"""Dynamic apps: placeholders in module_wsgi/module_asgi, working_dir or venv make one
block serve one app per distinct value (a tenant per host name, say), each started on
its first request in interpreters of its own. max_dynamic_apps bounds them (the least
recently used idle one makes room), dynamic_idle_timeout ends idle ones; a tenant whose
app fails to load gets 502 and no other is affected; values that would leave the base
directory are refused."""

import shutil
import textwrap
import threading
import time

import httpx
import pytest

import app_requirements as reqs
from support import Caddy, app_dir, python_block, wait_until

TENANT_APP = app_dir("tenant") / "tenant_app.py"
HOST_LABEL = "{http.request.host.labels.2}"  # alice in alice.tenants.localhost

INTERFACES = {
    "wsgi": dict(module_wsgi="tenant_app:app"),
    "asgi": dict(module_asgi="tenant_app:asgi_app"),
}


class AnyHostCaddy(Caddy):
    """A Caddy whose site answers every host name on its port."""

    def render(self, site_body: str) -> str:
        return super().render(site_body).replace(f"http://127.0.0.1:{self.http_port} {{", f"http://:{self.http_port} {{")


@pytest.fixture
def start_any_host(caddy_launcher, tmp_path_factory):
    started = []

    def start(site_body):
        caddy = AnyHostCaddy(caddy_launcher.binary, tmp_path_factory.mktemp("dynamic"))
        started.append(caddy)
        return caddy.start(site_body)

    yield start
    for caddy in started:
        caddy.stop()


def make_tenants(base, *names, source=None):
    for name in names:
        (base / name).mkdir(parents=True, exist_ok=True)
        if source is None:
            shutil.copy(TENANT_APP, base / name / "tenant_app.py")
        else:
            (base / name / "tenant_app.py").write_text(source)
    return base


def tenant_block(base, interface="wsgi", **options):
    spec = INTERFACES[interface]
    return python_block(
        None, spec.get("module_wsgi"), module_asgi=spec.get("module_asgi"),
        working_dir=f"{base}/{HOST_LABEL}", **options,
    )


def get(server, tenant, path="/", **kwargs):
    return server.client.get(path, headers={"Host": f"{tenant}.tenants.localhost"}, **kwargs)


def get_json(server, tenant, path="/"):
    response = get(server, tenant, path)
    assert response.status_code == 200, f"{tenant}: {response.status_code} {response.text}\n{server.log_text()[-3000:]}"
    return response.json()


@pytest.mark.parametrize("interface", sorted(INTERFACES))
def test_each_host_gets_an_app_of_its_own(start_any_host, tmp_path, interface):
    base = make_tenants(tmp_path / "tenants", "alice", "bob")
    server = start_any_host(tenant_block(base, interface))
    alice, bob = get_json(server, "alice"), get_json(server, "bob")
    assert (alice["tenant"], bob["tenant"]) == ("alice", "bob")
    assert alice["pid"] == bob["pid"] == server.pid
    assert alice["interp_id"] != bob["interp_id"]
    again = get_json(server, "alice")
    assert again["started_at"] == alice["started_at"] and again["hits"] == 2
    assert len(server.log_entries_containing("dynamic app started")) == 2


def test_a_module_placeholder_picks_the_module(start_any_host, tmp_path):
    """caddy-snake's example: one module per host label in one directory."""
    base = tmp_path / "apps"
    base.mkdir()
    for name in ("alice", "bob"):
        (base / f"{name}.py").write_text(
            f"def app(environ, start_response):\n"
            f"    start_response('200 OK', [])\n"
            f"    return [b'{name} module']\n"
        )
    server = start_any_host(python_block(None, f"{HOST_LABEL}:app", working_dir=base))
    assert get(server, "alice").text == "alice module"
    assert get(server, "bob").text == "bob module"


def test_a_tenant_that_fails_to_load_gets_502_and_no_other_is_affected(start_any_host, tmp_path):
    base = make_tenants(tmp_path / "tenants", "alice")
    make_tenants(base, "carol", source="def broken(:\n")
    server = start_any_host(tenant_block(base))
    assert get_json(server, "alice")["tenant"] == "alice"

    broken = get(server, "carol")
    assert broken.status_code == 502
    entries = [e for _, e in server.log_entries_containing("dynamic app failed to load") if e]
    assert entries and "carol" in entries[0]["tenant"] and "SyntaxError" in entries[0]["error"], entries
    missing = get(server, "dave")
    assert missing.status_code == 502
    assert server.wait_for_log("not a directory")

    assert get_json(server, "alice")["hits"] == 2
    assert server.alive()

    # Once fixed, the tenant loads on a request after the retry delay.
    shutil.copy(TENANT_APP, base / "carol" / "tenant_app.py")
    assert wait_until(lambda: get(server, "carol").status_code == 200, timeout=30, interval=0.5)


@pytest.mark.parametrize("value", ["..", ".", "../secret", "alice/../../secret", "a/b", ""])
def test_values_that_would_leave_the_base_directory_are_refused(start_any_host, tmp_path, value):
    base = make_tenants(tmp_path / "tenants", "alice")
    make_tenants(tmp_path, "secret")
    server = start_any_host(
        python_block(None, "tenant_app:app", working_dir=f"{base}/{{http.request.header.X-Tenant}}")
    )
    assert server.get("/", headers={"X-Tenant": "alice"}).json()["tenant"] == "alice"
    refused = server.get("/", headers={"X-Tenant": value})
    assert refused.status_code == 400, refused.text
    assert "secret" not in refused.text
    assert server.log_entries_containing("request names no valid dynamic app")


def test_max_dynamic_apps_ends_the_least_recently_used_idle_app(start_any_host, tmp_path):
    base = make_tenants(tmp_path / "tenants", "alice", "bob", "carol")
    server = start_any_host(tenant_block(base, max_dynamic_apps=2))
    first_alice = get_json(server, "alice")
    get_json(server, "bob")
    get_json(server, "alice")  # bob is now the least recently used
    get_json(server, "carol")
    assert server.wait_for_log("ending dynamic app")
    ended = [e for _, e in server.log_entries_containing("ending dynamic app") if e]
    assert len(ended) == 1 and "/bob" in ended[0]["tenant"], ended
    assert get_json(server, "alice")["started_at"] == first_alice["started_at"]
    assert get_json(server, "bob")["hits"] == 1  # started afresh


def test_when_every_app_has_requests_in_flight_a_new_one_gets_503(start_any_host, tmp_path):
    base = make_tenants(tmp_path / "tenants", "alice", "bob")
    server = start_any_host(tenant_block(base, max_dynamic_apps=1))
    get_json(server, "alice")
    slow = {}
    thread = threading.Thread(target=lambda: slow.update(r=get(server, "alice", "/slow?s=3")))
    thread.start()
    assert wait_until(lambda: get_json(server, "alice")["hits"] >= 2, timeout=10)  # the slow one is in
    time.sleep(0.3)
    busy = get(server, "bob")
    assert busy.status_code == 503, busy.text
    thread.join(30)
    assert slow["r"].status_code == 200
    assert get_json(server, "bob")["tenant"] == "bob"


def test_an_idle_app_is_ended_after_the_idle_timeout(start_any_host, tmp_path):
    base = make_tenants(tmp_path / "tenants", "alice")
    server = start_any_host(tenant_block(base, dynamic_idle_timeout="2s"))
    first = get_json(server, "alice")
    assert server.wait_for_log("ending dynamic app", timeout=30)
    assert [e["why"] for _, e in server.log_entries_containing("ending dynamic app") if e][0].startswith("idle for")
    assert get_json(server, "alice")["started_at"] > first["started_at"]


def test_a_watched_tenant_restarts_alone(start_any_host, tmp_path):
    base = make_tenants(tmp_path / "tenants", "alice", "bob")
    server = start_any_host(tenant_block(base, watch=""))
    alice, bob = get_json(server, "alice"), get_json(server, "bob")
    source = base / "alice" / "tenant_app.py"
    source.write_text(source.read_text() + "\n# edited\n")
    assert wait_until(lambda: get_json(server, "alice")["started_at"] != alice["started_at"], timeout=30)
    assert get_json(server, "bob")["started_at"] == bob["started_at"]


def test_a_reload_ends_every_tenant(start_any_host, tmp_path):
    base = make_tenants(tmp_path / "tenants", "alice", "bob")
    server = start_any_host(tenant_block(base))
    get_json(server, "alice"), get_json(server, "bob")
    server.reload(tenant_block(base, threads=2))
    assert wait_until(lambda: len(server.log_entries_containing("config unloaded")) == 2, timeout=30)
    assert get_json(server, "alice")["hits"] == 1


def test_a_dynamic_block_with_isolation_main_is_refused(caddy_must_refuse, tmp_path):
    failure = caddy_must_refuse(
        python_block(None, "tenant_app:app", working_dir=f"{tmp_path}/{HOST_LABEL}", isolation="main")
    )
    assert "isolation main" in failure.output and "placeholders" in failure.output


def test_idle_flask_tenants_in_one_process(start_any_host, tmp_path, make_venv, measurement):
    """How many idle small Flask tenants one process holds, what each costs in RSS, and
    how long a new tenant's first request takes (measured, not asserted)."""
    venv = make_venv("flask", reqs.FLASK)
    count = 40
    source = textwrap.dedent(
        """
        import os
        from flask import Flask

        app = Flask(__name__)
        NAME = os.path.basename(os.path.dirname(os.path.abspath(__file__)))

        @app.get("/")
        def hello():
            return {"tenant": NAME}
        """
    )
    names = [f"t{i:03d}" for i in range(count)]
    base = make_tenants(tmp_path / "tenants", *names, source=source)
    server = start_any_host(python_block(None, "tenant_app:app", working_dir=f"{base}/{HOST_LABEL}",
                                         venv=venv, max_dynamic_apps=count))
    rss = [server.rss_kib()]
    firsts = []
    for name in names:
        started = time.monotonic()
        assert get_json(server, name)["tenant"] == name
        firsts.append(time.monotonic() - started)
        rss.append(server.rss_kib())
    again = []
    for name in names[:5]:
        started = time.monotonic()
        get_json(server, name)
        again.append(time.monotonic() - started)
    per_tenant = (rss[-1] - rss[1]) / (count - 1) / 1024
    firsts_sorted = sorted(firsts)
    measurement(
        f"dynamic apps: {count} idle Flask tenants in one process: RSS {rss[0] / 1024:.0f} MiB before any, "
        f"{rss[1] / 1024:.0f} MiB with one, {rss[-1] / 1024:.0f} MiB with {count} "
        f"({per_tenant:.1f} MiB per tenant); first request of a new tenant: median "
        f"{firsts_sorted[len(firsts) // 2] * 1000:.0f} ms, max {firsts_sorted[-1] * 1000:.0f} ms; "
        f"a later request {sorted(again)[2] * 1000:.1f} ms"
    )
    assert server.alive()


def test_env_values_and_env_files_are_each_tenants_own(start_any_host, tmp_path):
    base = make_tenants(tmp_path / "tenants", "alice", "bob")
    (base / "alice" / ".env").write_text("FROM_FILE=alice's file\n")
    (base / "bob" / ".env").write_text("FROM_FILE=bob's file\n")
    server = start_any_host(
        tenant_block(base, env=f'GREETING "hello {HOST_LABEL}"', env_file=".env")
    )
    alice, bob = get_json(server, "alice"), get_json(server, "bob")
    assert (alice["greeting"], alice["from_file"]) == ("hello alice", "alice's file")
    assert (bob["greeting"], bob["from_file"]) == ("hello bob", "bob's file")
    make_tenants(base, "carol")  # no .env: its app cannot start
    assert get(server, "carol").status_code == 502
    assert server.wait_for_log("env_file")
