"""`watch [GLOB ...]` (and caddy-snake's `autoreload`): a saved change under an app's
working_dir gives that app alone new interpreters, started while the old ones still
serve; the old ones then finish what they have. A change that fails to import keeps
the old code serving. No request fails meanwhile."""

import json
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

import app_requirements as reqs
from support import admin_apps, app_dir, python_block, wait_until

ROOT = Path(__file__).resolve().parent.parent
WATCHED = app_dir("watched")

INTERFACES = {
    "wsgi": dict(module_wsgi="watched_app:app"),
    "asgi": dict(module_asgi="watched_app:asgi_app", lifespan="on"),
}


def copy_app(tmp_path, name="app") -> Path:
    target = tmp_path / name
    shutil.copytree(WATCHED, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def block(matcher, interface, workdir, **options):
    spec = INTERFACES[interface]
    return python_block(
        matcher, spec.get("module_wsgi"), module_asgi=spec.get("module_asgi"),
        lifespan=spec.get("lifespan"), working_dir=workdir, **options,
    )


def edit(path: Path, old: str, new: str) -> float:
    """Rewrites a file as an editor saves it; returns the time of the save."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))
    return time.monotonic()


def version(server, path="/"):
    response = server.get(path)
    assert response.status_code == 200, response.text
    return response.json()["version"]


def served_after(server, saved_at, want, path="/", field="version", timeout=30):
    """Polls until the app answers `want` in `field`; the seconds from the save
    (a bounded wait, not a timing check)."""

    def current():
        response = server.get(path)
        assert response.status_code == 200, response.text
        return response.json()[field]

    got = wait_until(lambda: current() == want, timeout=timeout, interval=0.01)
    assert got, f"still {current()!r} {timeout} s after the save, want {want!r}\n{server.log_text()[-3000:]}"
    return time.monotonic() - saved_at


class SteadyLoad:
    """Clients requesting `path` back to back until stopped; each keeps every answer
    it got, in order, as (status, body)."""

    def __init__(self, base_url, path="/", clients=2):
        self.base_url, self.path = base_url, path
        self.stop = threading.Event()
        self.per_client: list[list[tuple[int, str]]] = [[] for _ in range(clients)]
        self.threads = [threading.Thread(target=self.run, args=(seen,), daemon=True) for seen in self.per_client]

    def run(self, seen):
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = client.get(self.path)
                    seen.append((response.status_code, response.text))
                except httpx.HTTPError as exc:
                    seen.append((0, repr(exc)))

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    @property
    def results(self):
        return [r for seen in self.per_client for r in seen]

    def failures(self):
        return [r for r in self.results if r[0] != 200]


@pytest.mark.parametrize("interface", sorted(INTERFACES))
def test_a_saved_change_is_served_by_new_interpreters_of_the_same_process(interface, tmp_path, start_caddy, measurement):
    app = copy_app(tmp_path)
    server = start_caddy(block(None, interface, app, watch=""))
    first = server.get_json("/")
    assert first["version"] == "v1"
    pid = server.pid

    took = served_after(server, edit(app / "watched_app.py", '"v1"', '"v2"'), "v2")
    again = served_after(server, edit(app / "helper.py", '"helper 1"', '"helper 2"'), "helper 2", field="helper")
    assert server.pid == pid and server.alive()
    assert server.get_json("/")["started_at"] > first["started_at"]
    measurement(f"watch ({interface}, stdlib app, 1 interpreter): save to new code served {took:.3f} s, "
                f"then {again:.3f} s for an imported module")


def test_autoreload_is_watch_with_its_default_globs(tmp_path, start_caddy):
    app = copy_app(tmp_path)
    server = start_caddy(python_block(None, "watched_app:app", working_dir=app, autoreload=""))
    assert version(server) == "v1"
    served_after(server, edit(app / "watched_app.py", '"v1"', '"v2"'), "v2")


@pytest.mark.parametrize("interface", sorted(INTERFACES))
def test_a_change_that_fails_to_import_keeps_the_old_code_serving(interface, tmp_path, start_caddy):
    app = copy_app(tmp_path)
    server = start_caddy(block(None, interface, app, watch=""))
    assert version(server) == "v1"
    edit(app / "watched_app.py", 'VERSION = "v1"', 'VERSION = "v2"\nthis line is not Python')
    assert server.wait_for_log("restart failed; the running code keeps serving", timeout=30), server.log_text()[-3000:]
    entries = [e for _, e in server.log_entries_containing("restart failed") if e]
    assert entries and "SyntaxError" in entries[-1]["error"] and entries[-1]["module"] == INTERFACES[interface].get(
        "module_wsgi", INTERFACES[interface].get("module_asgi"))
    assert version(server) == "v1"

    served_after(server, edit(app / "watched_app.py", "\nthis line is not Python", ""), "v2")


def test_only_the_changed_app_is_restarted(tmp_path, start_caddy):
    one, two = copy_app(tmp_path, "one"), copy_app(tmp_path, "two")
    server = start_caddy(
        "\n".join(
            [
                block("/one/*", "wsgi", one, watch=""),
                block("/two/*", "asgi", two, watch=""),
                python_block("/probe/*", "probe:app", working_dir=app_dir("probe")),
            ]
        )
    )
    before_two = server.get_json("/two/")
    before_probe = server.get_json("/probe/info")
    served_after(server, edit(one / "watched_app.py", '"v1"', '"v2"'), "v2", path="/one/")
    assert server.get_json("/two/") == before_two
    after_probe = server.get_json("/probe/info")
    assert after_probe["interp_id"] == before_probe["interp_id"]
    assert after_probe["imported_at"] == before_probe["imported_at"]


def test_globs_choose_the_files_and_the_venv_is_never_watched(tmp_path, start_caddy, make_venv):
    app = copy_app(tmp_path)
    (app / "templates").mkdir()
    (app / "templates" / "page.html").write_text("<p>1</p>")
    (app / "notes.md").write_text("notes")
    venv = make_venv("watch-venv", [])
    inner_venv = app / "venv"
    shutil.copytree(venv, inner_venv, symlinks=True)
    server = start_caddy(
        python_block(None, "watched_app:app", working_dir=app, venv=inner_venv, watch='"*.py" "templates/**"')
    )
    assert version(server) == "v1"

    # Neither a file the globs do not name, nor a .py file in the venv, restarts it;
    # then a template, which a glob names, does.
    (app / "notes.md").write_text("changed")
    site = next((inner_venv / "lib").glob("python*/site-packages"))
    (site / "installed_meanwhile.py").write_text("X = 1\n")
    time.sleep(1)  # beyond the debounce, so that the next save is an event of its own
    (app / "templates" / "page.html").write_text("<p>2</p>")
    assert server.wait_for_log("restarting the app", timeout=30)
    assert wait_until(lambda: server.log_entries_containing("app restarted"), timeout=30)
    changed = [e["changed"] for _, e in server.log_entries_containing("restarting the app") if e]
    assert changed == [str(app / "templates" / "page.html")], changed


def serving_instance(apps, name):
    """The serving instance of an app in GET /python/apps: its number and its
    interpreters' ids."""
    serving = [inst for inst in apps[name]["instances"] if inst["state"] == "serving"]
    assert len(serving) == 1, apps[name]
    return serving[0]["instance"], sorted(interp["id"] for interp in serving[0]["interpreters"] or [])


@pytest.mark.parametrize("interface", sorted(INTERFACES))
def test_under_steady_load_no_request_fails_and_no_other_app_is_touched(interface, tmp_path, start_caddy, measurement):
    """Saves under a steady load on the edited app and on two others (one in interpreters,
    one in a process): every request is answered, the new code is served, a request in
    flight finishes on the old code, and the other apps keep their instances,
    interpreters and processes (the time their code was imported)."""
    app, other, proc = copy_app(tmp_path), copy_app(tmp_path, "other"), copy_app(tmp_path, "proc")
    server = start_caddy("\n".join([
        block("/app/*", interface, app, watch="", interpreters=2, name="edited"),
        block("/other/*", interface, other, watch="", interpreters=2, name="other"),
        block("/proc/*", interface, proc, watch="", isolation="process", interpreters=1, name="proc"),
    ]))
    assert version(server, "/app/") == "v1"
    others_before = {name: serving_instance(admin_apps(server), name) for name in ("other", "proc")}
    imported_before = {path: server.get_json(path)["started_at"] for path in ("/other/", "/proc/")}
    proc_pid = server.get_json("/proc/")["pid"]
    assert proc_pid != server.pid

    slow: dict = {}
    in_flight = threading.Thread(target=lambda: slow.update(r=httpx.get(server.base_url + "/app/slow?s=3", timeout=60)))
    in_flight.start()
    time.sleep(0.5)  # the slow request is inside the old code
    with SteadyLoad(server.base_url, "/app/") as load, SteadyLoad(server.base_url, "/other/", clients=1) as other_load, \
            SteadyLoad(server.base_url, "/proc/", clients=1) as proc_load:
        for n in range(2, 6):
            served_after(server, edit(app / "watched_app.py", f'"v{n - 1}"', f'"v{n}"'), f"v{n}", path="/app/")
        time.sleep(0.5)
    in_flight.join(60)
    assert slow["r"].status_code == 200 and slow["r"].json()["version"] == "v1"

    for each in (load, other_load, proc_load):
        assert each.results and each.failures() == [], (each.path, each.failures()[:5])
    for seen in load.per_client:
        # Once a client got the new code, it never gets the old again.
        numbers = [int(json.loads(body)["version"][1:]) for _, body in seen]
        assert numbers == sorted(numbers) and numbers[-1] == 5, numbers
    assert admin_apps(server)["edited"]["counters"]["restarts"].get("watch") == 4
    assert {name: serving_instance(admin_apps(server), name) for name in ("other", "proc")} == others_before
    assert {path: server.get_json(path)["started_at"] for path in ("/other/", "/proc/")} == imported_before
    for each in (other_load, proc_load):
        assert {json.loads(body)["version"] for _, body in each.results} == {"v1"}
    assert {json.loads(body)["pid"] for _, body in proc_load.results} == {proc_pid}
    measurement(f"watch ({interface}, 2 interpreters): {len(load.results)} requests under steady load across "
                f"4 restarts, {len(load.failures())} failed; the other apps answered {len(other_load.results)} "
                f"and {len(proc_load.results)}, none failed")


@pytest.mark.parametrize("interface", sorted(INTERFACES))
def test_a_request_still_running_on_old_code_holds_up_no_later_save(interface, tmp_path, start_caddy):
    """The old instance drains on its own: while a long request (an event stream, say)
    keeps it alive, later saves are still served."""
    app = copy_app(tmp_path)
    server = start_caddy(block(None, interface, app, watch=""))
    slow: dict = {}
    in_flight = threading.Thread(target=lambda: slow.update(r=httpx.get(server.base_url + "/slow?s=20", timeout=120)))
    in_flight.start()
    time.sleep(0.5)  # the slow request is inside v1
    for n in (2, 3):
        served_after(server, edit(app / "watched_app.py", f'"v{n - 1}"', f'"v{n}"'), f"v{n}")
    assert in_flight.is_alive(), "the slow request ended before the second save was served"
    in_flight.join(120)
    assert slow["r"].status_code == 200 and slow["r"].json()["version"] == "v1"


def test_the_demo_flask_app_reloads_on_save_under_load(tmp_path, start_caddy, make_venv, measurement):
    """The demo's Flask app (2 interpreters, its pinned Flask) as examples/Caddyfile
    mounts it, with `watch`: the time from a save to the new code answering, and every
    request of a steady load answered."""
    app = tmp_path / "flask"
    shutil.copytree(ROOT / "examples" / "flask", app, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    requirements = [line for line in (app / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    venv = make_venv("demo-flask", requirements)
    server = start_caddy(python_block("/flask/*", "app:app", working_dir=app, venv=venv, interpreters=2, watch=""))
    hello = "/flask/api/hello"
    assert server.get_json(hello)["message"] == "Hello, world!"

    def save(n):
        old = 'message=f"Hello, {name}!"' if n == 1 else f'message=f"Hello {n - 1}, {{name}}!"'
        saved = edit(app / "app.py", old, f'message=f"Hello {n}, {{name}}!"')
        took = served_after(server, saved, f"Hello {n}, world!", path=hello, field="message")
        time.sleep(0.5)  # the old interpreters end
        return took

    idle = [save(n) for n in range(1, 4)]
    with SteadyLoad(server.base_url, hello) as load:
        loaded = [save(n) for n in range(4, 7)]
    assert load.failures() == [], load.failures()[:5]
    measurement(
        "watch, demo Flask app (2 interpreters): save to new code served "
        + ", ".join(f"{t:.3f}" for t in idle) + " s idle; "
        + ", ".join(f"{t:.3f}" for t in loaded)
        + f" s under a steady load of 2 clients back to back ({len(load.results)} requests, "
        f"{len(load.failures())} failed)"
    )


def test_an_app_in_the_main_interpreter_restarts_in_place(tmp_path, start_caddy, make_venv):
    """FastAPI in `isolation main`: the new instance re-imports the app's own modules
    in the main interpreter, keeping the venv's compiled ones (pydantic_core)."""
    app = tmp_path / "fastapi"
    shutil.copytree(app_dir("fastapi_app"), app, ignore=shutil.ignore_patterns("__pycache__"))
    venv = make_venv("fastapi", reqs.FASTAPI)
    server = start_caddy(
        python_block(None, module_asgi="fastapi_app:app", lifespan="on", isolation="main",
                     working_dir=app, venv=venv, watch="")
    )
    assert server.get_json("/info")["code_version"] == "original"
    served_after(server, edit(app / "fastapi_helpers.py", 'HELPER_VERSION = "original"', 'HELPER_VERSION = "edited"'),
                 "edited", path="/info", field="helper_version")
    info = server.get_json("/info")
    assert info["interp_id"] == 0 and info["code_version"] == "original"
    ok = server.post("/items", json={"name": "pen", "price": 1.5, "quantity": 2})
    assert ok.status_code == 200, ok.text
